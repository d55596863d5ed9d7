/* See message.h. */

#include "message.h"

/* For write() alone: message.c is also built into the tests' library, without runtime.c. */
#include "arch.h"

/* Room kept for the "..." and the newline that may end a line. */
#define ROOM_FOR_THE_END 4

static const char hex_digits[] = "0123456789abcdef";

void line_begin(struct line *line)
{
    line->length = 0;
    line->cut = 0;
}

/* Appends `length` bytes as one piece: all of it, or (when it does not fit) nothing, and the
 * line is cut there, so that no escape or character is split. */
static void put(struct line *line, const char *piece, nixld_size length)
{
    if (line->cut || length > NIXLD_LINE_LIMIT - ROOM_FOR_THE_END - line->length) {
        line->cut = 1;
        return;
    }
    for (nixld_size i = 0; i < length; i++)
        line->text[line->length++] = piece[i];
}

void add_text(struct line *line, const char *text)
{
    for (; *text; text++)
        put(line, text, 1);
}

static int is_control(unsigned char byte)
{
    return byte < 0x20 || byte == 0x7f;
}

/* How many bytes `byte` takes on the line. */
static nixld_size shown_size(unsigned char byte)
{
    return is_control(byte) ? 4 : 1;
}

static void put_shown(struct line *line, unsigned char byte)
{
    if (is_control(byte)) {
        char escape[4] = {'\\', 'x', hex_digits[byte >> 4], hex_digits[byte & 15]};
        put(line, escape, 4);
    } else {
        put(line, (const char *)&byte, 1);
    }
}

static int is_continuation(unsigned char byte)
{
    return (byte & 0xc0) == 0x80;
}

/* How many bytes a UTF-8 character that starts with `byte` has (1 for anything else). */
static nixld_size character_size(unsigned char byte)
{
    if ((byte & 0xe0) == 0xc0)
        return 2;
    if ((byte & 0xf0) == 0xe0)
        return 3;
    if ((byte & 0xf8) == 0xf0)
        return 4;
    return 1;
}

/* How many of the first `length` bytes of `data` end on a character boundary: a UTF-8
 * character that `length` would split is left out whole. */
static nixld_size whole_characters(const unsigned char *data, nixld_size length)
{
    nixld_size start = length, back = 0;
    while (start > 0 && back < 3 && is_continuation(data[start - 1])) {
        start--;
        back++;
    }
    if (start > 0 && character_size(data[start - 1]) > back + 1)
        return start - 1;
    return length;
}

void add_value(struct line *line, const char *text, nixld_size length)
{
    const unsigned char *data = (const unsigned char *)text;
    nixld_size total = 0;
    for (nixld_size i = 0; i < length && total <= NIXLD_VALUE_LIMIT; i++)
        total += shown_size(data[i]);
    if (total <= NIXLD_VALUE_LIMIT) {
        for (nixld_size i = 0; i < length; i++)
            put_shown(line, data[i]);
        return;
    }
    /* The start and the end, each up to half of what a value may show. */
    nixld_size half = (NIXLD_VALUE_LIMIT - 3) / 2, head = 0, head_size = 0, tail = length, tail_size = 0;
    while (head_size + shown_size(data[head]) <= half)
        head_size += shown_size(data[head++]);
    while (tail_size + shown_size(data[tail - 1]) <= half)
        tail_size += shown_size(data[--tail]);
    head = whole_characters(data, head);
    while (tail < length && is_continuation(data[tail]))
        tail++;
    for (nixld_size i = 0; i < head; i++)
        put_shown(line, data[i]);
    put(line, "...", 3);
    for (nixld_size i = tail; i < length; i++)
        put_shown(line, data[i]);
}

void add_value_text(struct line *line, const char *text)
{
    add_value(line, text, nixld_length(text));
}

nixld_size line_finish(struct line *line)
{
    if (line->cut) {
        line->length = whole_characters((const unsigned char *)line->text, line->length);
        line->text[line->length++] = '.';
        line->text[line->length++] = '.';
        line->text[line->length++] = '.';
    }
    line->text[line->length++] = '\n';
    return line->length;
}

void write_line(struct line *line, int fd)
{
    nixld_size length = line_finish(line);
    nixld_syscall3(NIXLD_SYS_write, fd, (long)line->text, (long)length);
}

const char *error_text(long error)
{
    switch (-error) {
    case 1: return "Operation not permitted";
    case 2: return "No such file or directory";
    case 5: return "Input/output error";
    case 6: return "No such device or address";
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
    case 75: return "Value too large for defined data type";
    default: return "system error";
    }
}
