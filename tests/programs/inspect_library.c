/* A shared library with nothing in it but a function: `nixld inspect` tests build many copies,
 * each with its own SONAME, DT_NEEDED, RPATH or RUNPATH, and only ever inspect them (and have
 * glibc's loader list them), never call into them. */

int inspect_library_marker(void)
{
    return 0;
}
