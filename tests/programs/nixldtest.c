/* libnixldtest.so: built once per directory, each copy with its own GREETING, so that a test
 * can tell which directory the loader took it from. */

const char *nixldtest_greeting(void)
{
    return GREETING;
}
