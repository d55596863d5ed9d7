/* dlopen()s "libnixldtest.so" by bare name at run time, as plugins and language runtimes do,
 * and prints its greeting; then execs `argv[1] argv[2]...` if given. */

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    void *library = dlopen("libnixldtest.so", RTLD_NOW);
    if (library == NULL) {
        fprintf(stderr, "dlopens_library: %s\n", dlerror());
        return 1;
    }
    const char *(*greeting)(void) = (const char *(*)(void))dlsym(library, "nixldtest_greeting");
    if (greeting == NULL) {
        fprintf(stderr, "dlopens_library: %s\n", dlerror());
        return 1;
    }
    printf("%s\n", greeting());
    fflush(stdout);
    if (argc > 1) {
        execv(argv[1], argv + 1);
        fprintf(stderr, "dlopens_library: execv %s: %s\n", argv[1], strerror(errno));
        return 127;
    }
    return 0;
}
