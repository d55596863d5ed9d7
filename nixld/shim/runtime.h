/* The little of a C library that nixld's freestanding programs (the shim, the launcher)
 * need: memory helpers, exit, and one-line messages (message.h). Above the arch/ layer,
 * below everything else. */

#ifndef NIXLD_RUNTIME_H
#define NIXLD_RUNTIME_H

#include "arch.h"
#include "contract.h"
#include "message.h"

#define EXIT_CANNOT_START 127

void *memset(void *destination, int byte, nixld_size size);
void *memcpy(void *destination, const void *source, nixld_size size);
__attribute__((noreturn)) void exit_group(int status);
/* Whether what mmap returned is an -errno rather than an address. */
static inline int is_mmap_error(long result)
{
    return (unsigned long)result > -4096UL;
}

#endif
