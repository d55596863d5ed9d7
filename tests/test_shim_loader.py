"""The shim's check of the loader it is told to map (nixld/shim/load.c), driven through cffi:
whatever the bytes of a would-be loader's headers, the check ends in a fault or in a loader
that nixld run's own check accepts too, never in a crash."""

from __future__ import annotations

import os

import pytest
from conftest import PROJECT, cffi_library
from hypothesis import given, settings
from hypothesis import strategies as st

from nixld import elf
from nixld.errors import LoaderError
from nixld.loader import check_loader

REAL_LOADER = "/lib64/ld-linux-x86-64.so.2"
PROGRAM = "/usr/bin/true"

DECLARATIONS = """
const char *check_loader_file(const char *path, long *error);
"""

PREAMBLE = """
#include <unistd.h>
#include "load.h"

/* What the shim concludes about the loader at `path` (NULL: fit to map), without mapping it. */
const char *check_loader_file(const char *path, long *error)
{
    struct loader loader;
    const char *fault = nixld_open_loader(path, 4096, &loader);
    if (!fault)
        close(loader.fd);
    *error = loader.error;
    return fault;
}
"""


@pytest.fixture(scope="module")
def shim_check(tmp_path_factory):
    ffi, lib = cffi_library(tmp_path_factory.mktemp("load"), "_nixld_shim_load", DECLARATIONS, PREAMBLE,
                            [PROJECT / "nixld" / "shim" / "load.c"])

    def check(path: bytes) -> str | None:
        error = ffi.new("long *")
        fault = lib.check_loader_file(path, error)
        return None if fault == ffi.NULL else ffi.string(fault).decode()

    return check


@pytest.fixture(scope="module")
def real_loader_head() -> bytes:
    with open(REAL_LOADER, "rb") as stream:
        return stream.read()


def test_the_real_loader_passes_and_a_program_does_not(shim_check, tmp_path):
    assert shim_check(REAL_LOADER.encode()) is None
    assert shim_check(PROGRAM.encode()) == "is not an ELF program loader (it is a dynamically linked program)"
    assert shim_check(os.fsencode(tmp_path / "absent")) == "does not exist"


@settings(max_examples=300)
@given(changes=st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.none() | st.integers(0, 4096))
def test_any_damage_to_the_headers_is_a_fault_or_a_loader_nixld_run_accepts(shim_check, real_loader_head,
                                                                             tmp_path_factory, changes, cut):
    data = bytearray(real_loader_head)
    for offset, value in changes:
        data[offset] = value
    if cut is not None:
        data = data[:cut]
    path = tmp_path_factory.mktemp("damaged") / "ld.so"
    path.write_bytes(bytes(data))
    os.chmod(path, 0o755)
    fault = shim_check(os.fsencode(path))
    if fault is None:
        header = elf.read_header(os.fsencode(path))
        try:
            check_loader(os.fsencode(path), "NIX_LD", "x86_64_linux", PROGRAM.encode(), elf.read_header(PROGRAM.encode()))
        except LoaderError as error:
            pytest.fail(f"the shim accepts a loader nixld run refuses: {error.message}")
        assert header.type == elf.ET_DYN and header.entry and header.interpreter is None
