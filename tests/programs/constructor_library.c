/* libconstructor.so: its constructor prints LD_LIBRARY_PATH as a library constructor sees it,
 * before main, so that a test can tell what the loader was lent. */

#include <stdio.h>
#include <stdlib.h>

__attribute__((constructor)) static void report(void)
{
    const char *value = getenv("LD_LIBRARY_PATH");
    if (value == NULL)
        printf("constructor: LD_LIBRARY_PATH unset\n");
    else
        printf("constructor: LD_LIBRARY_PATH=%s\n", value);
}
