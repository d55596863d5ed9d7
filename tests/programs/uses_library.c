/* Has libnixldtest.so as DT_NEEDED (and no rpath): it starts only if the loader finds it.
 * Prints the library's greeting, then execs `argv[1] argv[2]...` if given, so that a test
 * can look at the environment this process had. */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const char *nixldtest_greeting(void);

int main(int argc, char **argv)
{
    printf("%s\n", nixldtest_greeting());
    fflush(stdout);
    if (argc > 1) {
        execv(argv[1], argv + 1);
        fprintf(stderr, "uses_library: execv %s: %s\n", argv[1], strerror(errno));
        return 127;
    }
    return 0;
}
