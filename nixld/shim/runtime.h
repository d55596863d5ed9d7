/* The little of a C library that nixld's freestanding programs (the shim, the launcher)
 * need: memory helpers, exit, and one-line messages (message.h). Above the arch/ layer,
 * below everything else. */

#ifndef NIXLD_RUNTIME_H
#define NIXLD_RUNTIME_H

#include "arch.h"
#include "contract.h"
#include "message.h"

/* The status when a program exists but cannot be executed (its loader is missing or unusable),
 * as shells give it. Not 127, "not found": the kernel's ENOENT for a missing interpreter, which
 * shells report so for a file that exists, is the very confusion nixld is there to end. */
#define EXIT_CANNOT_EXECUTE 126

void *memset(void *destination, int byte, nixld_size size);
void *memcpy(void *destination, const void *source, nixld_size size);
__attribute__((noreturn)) void exit_group(int status);
/* Whether two NUL-terminated strings are the same. */
int equal_strings(const char *a, const char *b);
/* Whether what mmap returned is an -errno rather than an address. */
static inline int is_mmap_error(long result)
{
    return (unsigned long)result > -4096UL;
}

#endif
