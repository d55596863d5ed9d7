/* One-line messages from the shim and the launcher. They run before every foreign program,
 * set-user-ID ones included, with paths and values chosen by whoever starts them: a line is
 * bounded, the caller's bytes in it are escaped and cut, and it is written in one write().
 * Freestanding like contract.c, so that a test library can be built from it alone. */

#ifndef NIXLD_MESSAGE_H
#define NIXLD_MESSAGE_H

#include "contract.h"

/* The longest line, its newline included. */
#define NIXLD_LINE_LIMIT 2048
/* The most a line shows of one value the caller chose (a path, a variable's value): a longer
 * value is shown as its start, "...", and its end. */
#define NIXLD_VALUE_LIMIT 400

struct line {
    char text[NIXLD_LINE_LIMIT];
    nixld_size length; /* never more than NIXLD_LINE_LIMIT - 4: "...\n" always fits after */
    int cut;           /* something did not fit: the line ends in "..." */
};

void line_begin(struct line *line);
/* nixld's own words. */
void add_text(struct line *line, const char *text);
/* Bytes the caller chose: control characters shown as \xHH, at most NIXLD_VALUE_LIMIT bytes
 * shown. */
void add_value(struct line *line, const char *data, nixld_size length);
void add_value_text(struct line *line, const char *text);
/* Ends the line ("..." when cut, then a newline); returns its length. */
nixld_size line_finish(struct line *line);
/* Ends the line and writes it to `fd` in one write. */
void write_line(struct line *line, int fd);
/* What a system call's -errno means, as strerror says it. */
const char *error_text(long error);

#endif
