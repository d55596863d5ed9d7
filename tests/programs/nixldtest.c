/* libnixldtest.so: built once per directory, each copy with its own GREETING, so that a test
 * can tell which directory the loader took it from. Built with MARK (a path), its constructor
 * creates that file: proof that the library was loaded at all, for the tests in which a
 * caller's library must never be. */

#ifdef MARK
#include <fcntl.h>
#include <unistd.h>

__attribute__((constructor)) static void leave_mark(void)
{
    int fd = open(MARK, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0)
        close(fd);
}
#endif

const char *nixldtest_greeting(void)
{
    return GREETING;
}
