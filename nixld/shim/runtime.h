/* The little of a C library that nixld's freestanding programs (the shim, the launcher)
 * need: memory and string helpers, exit, and one-line messages written at once. Above the
 * arch/ layer, below everything else. */

#ifndef NIXLD_RUNTIME_H
#define NIXLD_RUNTIME_H

#include "contract.h"

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
nixld_size length_of(const char *string);
int starts_with(const char *string, const char *prefix);
__attribute__((noreturn)) void exit_group(int status);
/* Whether what mmap returned is an -errno rather than an address. */
static inline int is_mmap_error(long result)
{
    return (unsigned long)result > -4096UL;
}

/* A message line, cut with "..." when too long (paths can be 4 KiB). */
struct line {
    char text[1024];
    nixld_size length;
};

void add(struct line *line, const char *data, nixld_size length);
void add_text(struct line *line, const char *text);
void add_string(struct line *line, struct nixld_string string);
/* Writes the line and a newline to `fd` in one write. */
void write_line(struct line *line, int fd);
/* What a system call's -errno means, as strerror says it. */
const char *error_text(long error);

#endif
