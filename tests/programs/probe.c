/* A multipurpose test program; its first argument says what to do.
 *
 *   argv            print every argv entry (argv[0] included), one per line
 *   exit STATUS     exit with STATUS
 *   kill SIGNUM     kill itself with SIGNUM
 *   cat             copy stdin to stdout
 *   yes             write "y\n" until a write fails; report the failure and exit 1
 *   touch PATH      create the file PATH
 *   exe             print where /proc/self/exe points
 *   reexec ARG...   exec /proc/self/exe with the same argv[0] and ARG... (as programs that
 *                   re-execute themselves do)
 *   env [PROG ARG...]
 *                   print LD_LIBRARY_PATH and NIX_LD_LIBRARY_PATH as NAME=value or NAME unset;
 *                   then run PROG (a path) with ARG... as a child, wait, and exit as it did
 *   environ         write every `environ` entry followed by a NUL: the block as libc holds it
 *   start           check what the program's start saw: AT_ENTRY (getauxval, and in the auxv
 *                   found by walking the stack past argv and envp, as Go's runtime and musl do)
 *                   is the program's own entry point, and envp as found on the stack holds
 *                   what `environ` holds; print "start ok" or what differs
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
extern char _start[];

/* The stack the program started with, as its C library's start code found it. */
static char **initial_argv;
static int initial_argc;

static int write_all(int fd, const char *buffer, size_t size)
{
    while (size > 0) {
        ssize_t written = write(fd, buffer, size);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buffer += written;
        size -= (size_t)written;
    }
    return 0;
}

static void print_variable(const char *name)
{
    const char *value = getenv(name);
    if (value == NULL)
        printf("%s unset\n", name);
    else
        printf("%s=%s\n", name, value);
}

static int run_child(char **argv)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("probe: fork");
        return 125;
    }
    if (pid == 0) {
        execv(argv[0], argv);
        fprintf(stderr, "probe: execv %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            perror("probe: waitpid");
            return 125;
        }
    }
    if (WIFSIGNALED(status)) {
        signal(WTERMSIG(status), SIG_DFL);
        raise(WTERMSIG(status));
    }
    return WEXITSTATUS(status);
}

static int check_start(void)
{
    int faults = 0;
    unsigned long entry = (unsigned long)_start;
    if (getauxval(AT_ENTRY) != entry) {
        printf("getauxval(AT_ENTRY) is %#lx, the entry point %#lx\n", getauxval(AT_ENTRY), entry);
        faults++;
    }
    char **envp = initial_argv + initial_argc + 1;
    char **end = envp;
    while (*end)
        end++;
    int same = 1;
    for (int i = 0; same && i <= end - envp; i++)
        same = envp[i] == environ[i];
    if (!same) {
        printf("envp on the stack is not environ\n");
        faults++;
    }
    unsigned long walked_entry = 0;
    for (unsigned long *aux = (unsigned long *)(end + 1); aux[0] != AT_NULL; aux += 2)
        if (aux[0] == AT_ENTRY)
            walked_entry = aux[1];
    if (walked_entry != entry) {
        printf("the auxv after envp on the stack has AT_ENTRY %#lx, the entry point %#lx\n", walked_entry, entry);
        faults++;
    }
    if (!faults)
        printf("start ok\n");
    return faults ? 1 : 0;
}

int main(int argc, char **argv)
{
    initial_argc = argc;
    initial_argv = argv;
    if (argc < 2) {
        fprintf(stderr, "probe: name a subcommand\n");
        return 2;
    }
    const char *command = argv[1];
    if (strcmp(command, "argv") == 0) {
        for (int i = 0; i < argc; i++)
            printf("%s\n", argv[i]);
        return 0;
    }
    if (strcmp(command, "exit") == 0 && argc == 3)
        return atoi(argv[2]);
    if (strcmp(command, "kill") == 0 && argc == 3) {
        int number = atoi(argv[2]);
        signal(number, SIG_DFL);
        kill(getpid(), number);
        fprintf(stderr, "probe: still alive after signal %d\n", number);
        return 99;
    }
    if (strcmp(command, "cat") == 0) {
        char buffer[65536];
        ssize_t got;
        while ((got = read(0, buffer, sizeof buffer)) != 0) {
            if (got < 0) {
                if (errno == EINTR)
                    continue;
                perror("probe: read");
                return 1;
            }
            if (write_all(1, buffer, (size_t)got) < 0) {
                perror("probe: write");
                return 1;
            }
        }
        return 0;
    }
    if (strcmp(command, "yes") == 0) {
        char buffer[4096];
        for (size_t i = 0; i < sizeof buffer; i += 2)
            memcpy(buffer + i, "y\n", 2);
        for (;;) {
            if (write_all(1, buffer, sizeof buffer) < 0) {
                fprintf(stderr, "probe: write: %s\n", strerror(errno));
                return 1;
            }
        }
    }
    if (strcmp(command, "touch") == 0 && argc == 3) {
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            perror("probe: open");
            return 1;
        }
        close(fd);
        return 0;
    }
    if (strcmp(command, "exe") == 0) {
        char target[4096];
        ssize_t size = readlink("/proc/self/exe", target, sizeof target - 1);
        if (size < 0) {
            perror("probe: readlink");
            return 1;
        }
        target[size] = '\0';
        printf("%s\n", target);
        return 0;
    }
    if (strcmp(command, "reexec") == 0 && argc > 2) {
        argv[1] = argv[0];
        execv("/proc/self/exe", argv + 1);
        fprintf(stderr, "probe: execv /proc/self/exe: %s\n", strerror(errno));
        return 127;
    }
    if (strcmp(command, "environ") == 0) {
        for (char **entry = environ; *entry; entry++)
            if (write_all(1, *entry, strlen(*entry) + 1) < 0)
                return 1;
        return 0;
    }
    if (strcmp(command, "start") == 0)
        return check_start();
    if (strcmp(command, "env") == 0) {
        print_variable("LD_LIBRARY_PATH");
        print_variable("NIX_LD_LIBRARY_PATH");
        if (argc > 2)
            return run_child(argv + 2);
        return 0;
    }
    fprintf(stderr, "probe: unknown subcommand or wrong arguments: %s\n", command);
    return 2;
}
