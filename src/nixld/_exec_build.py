"""cffi build script for nixld's C core (`nixld._exec`), run by setuptools at install time."""

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    "int nixld_execve(const char *path, const char *argv_block, size_t argc,"
    " const char *env_block, size_t envc, int default_signals);"
)
# Paths are relative to the project root, where setuptools runs this script.
ffibuilder.set_source(
    "nixld._exec",
    '#include "_exec_core.h"',
    sources=["src/nixld/_exec_core.c"],
    include_dirs=["src/nixld"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
