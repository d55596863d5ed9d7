/* A #! interpreter that has libnixldtest.so as DT_NEEDED (and no rpath), so that it starts only
 * if the loader finds the library: prints the library's greeting, then every argv entry
 * (argv[0] included) one per line, which for a script is INTERPRETER [ARGUMENT] SCRIPT ARGS as
 * the kernel builds them. */

#include <stdio.h>

const char *nixldtest_greeting(void);

int main(int argc, char **argv)
{
    printf("%s\n", nixldtest_greeting());
    for (int i = 0; i < argc; i++)
        printf("%s\n", argv[i]);
    return 0;
}
