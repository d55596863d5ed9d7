/* The whole C core of nixld: execve(2) from ready-made NUL-separated blocks, with the signal
 * dispositions a program expects. Every decision was taken in Python before this point. */

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* CPython ignores these at start-up, and an ignored signal stays ignored across execve:
 * `yes | head` would then report EPIPE instead of dying quietly. */
static const int python_ignored_signals[] = {SIGPIPE, SIGXFSZ};
#define N_SIGNALS (sizeof python_ignored_signals / sizeof python_ignored_signals[0])

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

/* execve(path, argv, env): the blocks hold argc and envc NUL-terminated strings. With
 * default_signals, SIGPIPE and SIGXFSZ are reset to their default action first (and restored
 * on failure). Returns only on failure: -1 with errno set. */
int nixld_execve(const char *path, const char *argv_block, size_t argc,
                 const char *env_block, size_t envc, int default_signals)
{
    struct sigaction saved[N_SIGNALS];
    struct sigaction default_action;
    char **argv = split_block(argv_block, argc);
    char **envp = argv == NULL ? NULL : split_block(env_block, envc);

    if (envp == NULL) {
        free(argv);
        errno = ENOMEM;
        return -1;
    }
    memset(&default_action, 0, sizeof default_action);
    default_action.sa_handler = SIG_DFL;
    for (size_t i = 0; default_signals && i < N_SIGNALS; i++)
        sigaction(python_ignored_signals[i], &default_action, &saved[i]);

    execve(path, argv, envp);

    /* Only reached on failure: leave the process as it was, keeping execve's errno. */
    int saved_errno = errno;
    for (size_t i = 0; default_signals && i < N_SIGNALS; i++)
        sigaction(python_ignored_signals[i], &saved[i], NULL);
    free(argv);
    free(envp);
    errno = saved_errno;
    return -1;
}
