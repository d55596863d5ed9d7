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

nixld_size length_of(const char *string)
{
    nixld_size length = 0;
    while (string[length])
        length++;
    return length;
}

int starts_with(const char *string, const char *prefix)
{
    while (*prefix)
        if (*string++ != *prefix++)
            return 0;
    return 1;
}

__attribute__((noreturn)) void exit_group(int status)
{
    for (;;)
        nixld_syscall3(NIXLD_SYS_exit_group, status, 0, 0);
}

void add(struct line *line, const char *data, nixld_size length)
{
    /* A line too long for the buffer is cut, ending in "..." (paths can be 4 KiB). */
    for (nixld_size i = 0; i < length; i++) {
        if (line->length >= sizeof line->text - 4) {
            line->text[line->length++] = '.';
            line->text[line->length++] = '.';
            line->text[line->length++] = '.';
            return;
        }
        line->text[line->length++] = data[i];
    }
}

void add_text(struct line *line, const char *text)
{
    add(line, text, length_of(text));
}

void add_string(struct line *line, struct nixld_string string)
{
    add(line, string.data, string.length);
}

void write_line(struct line *line, int fd)
{
    line->text[line->length++] = '\n';
    nixld_syscall3(NIXLD_SYS_write, fd, (long)line->text, (long)line->length);
}

const char *error_text(long error)
{
    switch (-error) {
    case 1: return "Operation not permitted";
    case 2: return "No such file or directory";
    case 5: return "Input/output error";
    case 8: return "Exec format error";
    case 12: return "Cannot allocate memory";
    case 13: return "Permission denied";
    case 19: return "No such device";
    case 20: return "Not a directory";
    case 21: return "Is a directory";
    case 22: return "Invalid argument";
    case 23: case 24: return "Too many open files";
    case 26: return "Text file busy";
    case 36: return "File name too long";
    case 40: return "Too many levels of symbolic links";
    default: return "system error";
    }
}
