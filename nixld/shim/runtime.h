/* The little of a C library that nixld's freestanding programs (the shim, the launcher)
 * need: memory helpers, exit, and one-line messages (message.h). Above the arch/ layer,
 * below everything else. */

#ifndef NIXLD_RUNTIME_H
#define NIXLD_RUNTIME_H

#include "contract.h"
#include "message.h"

#if defined(__x86_64__)
#include "arch/x86_64.h"
#elif defined(__i386__)
#include "arch/i386.h"
#elif defined(__aarch64__)
#include "arch/aarch64.h"
#else
#error "nixld's shim has no arch/ layer for this architecture"
#endif

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
