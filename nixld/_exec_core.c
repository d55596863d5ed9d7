/* The whole C core of nixld: turn two NUL-separated blocks into the pointer arrays that
 * execve(2) wants, and call it. Every decision was taken in Python before this point. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "_exec_core.h"

/* Python has checked that `block` holds exactly `count` NUL-terminated strings. */
static char **split_block(const char *block, size_t count)
{
    char **vector = malloc((count + 1) * sizeof *vector);
    if (vector == NULL)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        vector[i] = (char *)block;
        block += strlen(block) + 1;
    }
    vector[count] = NULL;
    return vector;
}

int nixld_execve(const char *path, const char *argv_block, size_t argc,
                 const char *env_block, size_t envc)
{
    char **argv = split_block(argv_block, argc);
    char **envp = argv == NULL ? NULL : split_block(env_block, envc);
    if (argv != NULL && envp != NULL)
        execve(path, argv, envp);
    /* execve returns only on failure; keep its errno (or malloc's) across free(). */
    int saved_errno = errno;
    free(argv);
    free(envp);
    errno = saved_errno;
    return -1;
}
