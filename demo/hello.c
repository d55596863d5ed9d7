/* The demo's foreign binary: linked with an interpreter path that exists on no machine,
 * so the kernel refuses it exactly as NixOS refuses a binary built for another distribution. */
#include <stdio.h>
#include <stdlib.h>

const char *nixld_demo_greeting(void);

int main(int argc, char **argv)
{
    const char *library_path = getenv("LD_LIBRARY_PATH");
    printf("Hello from a foreign binary (argv[0] = %s)!\n", argv[0]);
    printf("  %s\n", nixld_demo_greeting());
    printf("  LD_LIBRARY_PATH in my environment: %s\n",
           library_path == NULL ? "(unset), so my children see none either" : library_path);
    for (int i = 1; i < argc; i++)
        printf("  argument %d: %s\n", i, argv[i]);
    return 0;
}
