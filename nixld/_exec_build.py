"""cffi build script for nixld's C core (`nixld._exec`), run by setuptools at install time.

The whole core is `_exec.c`, beside this file; it becomes the body of the generated module,
so the declaration below is all the header it needs.
"""

from pathlib import Path

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    "int nixld_execve(const char *path, const char *argv_block, size_t argc,"
    " const char *env_block, size_t envc, int default_signals);"
)
ffibuilder.set_source("nixld._exec", Path(__file__).with_name("_exec.c").read_text())

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
