#ifndef NIXLD_EXEC_CORE_H
#define NIXLD_EXEC_CORE_H

#include <stddef.h>

/* execve(path, argv, env): the blocks hold argc and envc NUL-terminated strings. With
 * default_signals, SIGPIPE and SIGXFSZ are reset to their default action first (and restored
 * on failure). Returns only on failure: -1 with errno set. */
int nixld_execve(const char *path, const char *argv_block, size_t argc,
                 const char *env_block, size_t envc, int default_signals);

#endif
