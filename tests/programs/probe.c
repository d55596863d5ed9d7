/* A multipurpose test program; its first argument says what to do.
 *
 *   argv            print every argv entry (argv[0] included), one per line
 *   exit STATUS     exit with STATUS
 *   kill SIGNUM     kill itself with SIGNUM
 *   cat             copy stdin to stdout
 *   yes             write "y\n" until a write fails; report the failure and exit 1
 *   touch PATH      create the file PATH
 *   exe             print where /proc/self/exe points
 *   beside NAME     find the file NAME beside the program, as programs that ship their files
 *                   beside themselves do, through argv[0] and through /proc/self/exe: print
 *                   "argv[0]: " and "exe: ", each followed by the file's first line or by why
 *                   it could not be read
 *   reexec ARG...   exec /proc/self/exe with the same argv[0] and ARG... (as programs that
 *                   re-execute themselves do)
 *   env [PROG ARG...]
 *                   print LD_LIBRARY_PATH and NIX_LD_LIBRARY_PATH as NAME=value or NAME unset;
 *                   then run PROG (a path) with ARG... as a child, wait, and exit as it did
 *   environ         write every `environ` entry followed by a NUL: the block as libc holds it
 *   start           check what the program's start saw: AT_ENTRY (getauxval, and in the auxv
 *                   found by walking the stack past argv and envp, as Go's runtime and musl do)
 *                   is the program's own entry point, envp as found on the stack holds what
 *                   `environ` holds, and the stack pointer was 16-byte aligned at the entry
 *                   point, as the ABI promises; print "start ok" or what differs
 *   auxv            check the auxv found by walking the stack against the kernel's
 *                   (/proc/self/auxv): the same types in the same order, ending in AT_NULL,
 *                   with AT_IGNORE pairs the only additions; values the same but for what
 *                   describes the loader and the program image (AT_PHDR, AT_PHENT, AT_PHNUM,
 *                   AT_BASE, AT_ENTRY, AT_EXECFN); print "auxv ok" or what differs
 *   fds             print the file descriptors open besides 0, 1 and 2, one per line
 *   ids             print the real and effective user and group IDs
 */

#include <dirent.h>
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

/* The auxv after envp on the stack the program started on, as start code finds it. */
static unsigned long *walked_auxv(void)
{
    char **end = initial_argv + initial_argc + 1;
    while (*end)
        end++;
    return (unsigned long *)(end + 1);
}

static int check_start(void)
{
    int faults = 0;
    /* At the entry point the stack pointer is at argc, one word below argv. */
    unsigned long entry_stack = (unsigned long)initial_argv - sizeof(long);
    if (entry_stack % 16 != 0) {
        printf("the stack pointer at the entry point was %lu mod 16\n", entry_stack % 16);
        faults++;
    }
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
    for (unsigned long *aux = walked_auxv(); aux[0] != AT_NULL; aux += 2)
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

static int describes_the_image(unsigned long type)
{
    return type == AT_PHDR || type == AT_PHENT || type == AT_PHNUM || type == AT_BASE || type == AT_ENTRY ||
           type == AT_EXECFN;
}

static int check_auxv(void)
{
    unsigned long kernel[512];
    int fd = open("/proc/self/auxv", O_RDONLY);
    ssize_t got = fd < 0 ? -1 : read(fd, kernel, sizeof kernel);
    if (got <= 0) {
        perror("probe: /proc/self/auxv");
        return 1;
    }
    close(fd);
    size_t pairs = (size_t)got / (2 * sizeof(long)), at = 0;
    unsigned long *walked = walked_auxv();
    int faults = 0;
    for (;; walked += 2) {
        if (walked[0] == AT_IGNORE && walked[1] == 0)
            continue;
        if (at >= pairs) {
            printf("the walked auxv goes on past the kernel's end\n");
            return 1;
        }
        unsigned long type = kernel[2 * at], value = kernel[2 * at + 1];
        if (walked[0] != type) {
            printf("pair %zu: type %lu on the stack, %lu in the kernel's\n", at, walked[0], type);
            return 1;
        }
        if (walked[1] != value && !describes_the_image(type)) {
            printf("pair %zu (type %lu): %#lx on the stack, %#lx in the kernel's\n", at, type, walked[1], value);
            faults++;
        }
        at++;
        if (type == AT_NULL)
            break;
    }
    if (!faults)
        printf("auxv ok\n");
    return faults ? 1 : 0;
}

static int list_fds(void)
{
    DIR *directory = opendir("/proc/self/fd");
    if (directory == NULL) {
        perror("probe: /proc/self/fd");
        return 1;
    }
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        int fd = atoi(entry->d_name);
        if (entry->d_name[0] == '.' || fd <= 2 || fd == dirfd(directory))
            continue;
        char path[64], target[4096];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t size = readlink(path, target, sizeof target - 1);
        target[size < 0 ? 0 : size] = '\0';
        printf("%d %s\n", fd, target);
    }
    closedir(directory);
    return 0;
}

/* "HOW: " and the first line of NAME in the directory of `path` (".", without a slash). */
static void print_beside(const char *how, const char *path, const char *name)
{
    const char *slash = strrchr(path, '/');
    char file[8192], line[512] = "\n";
    snprintf(file, sizeof file, "%.*s/%s", slash ? (int)(slash - path) : 1, slash ? path : ".", name);
    FILE *stream = fopen(file, "r");
    if (!stream) {
        printf("%s: %s: %s\n", how, file, strerror(errno));
        return;
    }
    if (!fgets(line, sizeof line, stream))
        strcpy(line, "\n");
    fclose(stream);
    printf("%s: %s", how, line);
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
    if (strcmp(command, "beside") == 0 && argc == 3) {
        char exe[4096];
        ssize_t size = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[size < 0 ? 0 : size] = '\0';
        print_beside("argv[0]", argv[0], argv[2]);
        print_beside("exe", exe, argv[2]);
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
    if (strcmp(command, "auxv") == 0)
        return check_auxv();
    if (strcmp(command, "fds") == 0)
        return list_fds();
    if (strcmp(command, "ids") == 0) {
        printf("uid=%u euid=%u gid=%u egid=%u\n", getuid(), geteuid(), getgid(), getegid());
        return 0;
    }
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
