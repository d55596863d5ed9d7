/* See runtime.h. */

#include "runtime.h"

/* Compilers may emit calls to these even in freestanding code; gcc must not turn their own
 * loops into calls of themselves. */
#if defined(__GNUC__) && !defined(__clang__)
#define NOT_A_CALL_OF_ITSELF __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define NOT_A_CALL_OF_ITSELF
#endif

__attribute__((used)) NOT_A_CALL_OF_ITSELF void *memset(void *destination, int byte, nixld_size size)
{
    unsigned char *out = destination;
    while (size--)
        *out++ = (unsigned char)byte;
    return destination;
}

__attribute__((used)) NOT_A_CALL_OF_ITSELF void *memcpy(void *destination, const void *source, nixld_size size)
{
    unsigned char *out = destination;
    const unsigned char *in = source;
    while (size--)
        *out++ = *in++;
    return destination;
}

__attribute__((noreturn)) void exit_group(int status)
{
    for (;;)
        nixld_syscall3(NIXLD_SYS_exit_group, status, 0, 0);
}

int equal_strings(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}
