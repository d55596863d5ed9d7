/* The demo's shared library: found only through the directory that nixld hands the loader. */
const char *nixld_demo_greeting(void)
{
    return "greetings from libnixld-demo.so, found without LD_LIBRARY_PATH";
}
