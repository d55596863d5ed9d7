#ifndef NIXLD_EXEC_CORE_H
#define NIXLD_EXEC_CORE_H

#include <stddef.h>

/* Returns only on failure: -1 with errno set. */
int nixld_execve(const char *path, const char *argv_block, size_t argc,
                 const char *env_block, size_t envc);

#endif
