"""The shim's check of the loader it is told to map (nixld/shim/load.c), driven through cffi:
whatever the bytes of a would-be loader's headers, the check ends in a fault or in a loader
that nixld run's own check accepts too, never in a crash."""

from __future__ import annotations

import os
import struct

import pytest
from crafted import load_headers, rewrite_program_header
from hypothesis import given, settings
from hypothesis import strategies as st

from nixld import elf
from nixld.errors import LoaderError
from nixld.loader import check_loader

REAL_LOADER = "/lib64/ld-linux-x86-64.so.2"
PROGRAM = "/usr/bin/true"


@pytest.fixture(scope="module")
def shim_check(shim_c_as_built):
    """What the shim concludes about the loader at a path (None: fit to map), without mapping it."""
    return lambda path: shim_c_as_built.call("check_loader", path)


@pytest.fixture(scope="module")
def real_loader_head() -> bytes:
    with open(REAL_LOADER, "rb") as stream:
        return stream.read()


def test_the_real_loader_passes_and_a_program_does_not(shim_check, tmp_path):
    assert shim_check(REAL_LOADER.encode()) is None
    assert shim_check(PROGRAM.encode()) == "is not an ELF program loader (it is a dynamically linked program)"
    assert shim_check(os.fsencode(tmp_path / "absent")) == "does not exist"


PAGE = 4096


def file_part_larger_than_memory(data: bytearray) -> bytearray:
    at, code = load_headers(data)[1]
    code["filesz"] = code["memsz"] + 16
    rewrite_program_header(data, at, code)
    return data


def out_of_order(data: bytearray) -> bytearray:
    (first_at, first), (second_at, second) = load_headers(data)[1:3]
    rewrite_program_header(data, first_at, second)
    rewrite_program_header(data, second_at, first)
    return data


def overlapping(data: bytearray) -> bytearray:
    (_, code), (at, constants) = load_headers(data)[1:3]
    constants["vaddr"] = constants["paddr"] = code["vaddr"] + PAGE  # inside the code, the page offset kept
    rewrite_program_header(data, at, constants)
    return data


def past_the_end_of_the_file(data: bytearray) -> bytearray:
    _, last = load_headers(data)[-1]
    return data[:last["offset"] + last["filesz"] - 1]


def ending_at_the_top_of_the_address_space(data: bytearray) -> bytearray:
    at, writable = load_headers(data)[-1]
    writable["vaddr"] = writable["paddr"] = 2 ** 64 - 3 * PAGE + writable["offset"] % PAGE  # the page offset kept
    # It ends at the last byte: its end does not wrap around, the end of its page does.
    writable["filesz"] = writable["memsz"] = 2 ** 64 - 1 - writable["vaddr"]
    rewrite_program_header(data, at, writable)
    return data


def entry_in_the_zero_filled_part(data: bytearray) -> bytearray:
    at, writable = load_headers(data)[-1]
    assert writable["memsz"] - writable["filesz"] > 32, "the loader's last segment has no zero-filled part"
    writable["flags"] |= 1  # PF_X: the entry's segment must be code
    rewrite_program_header(data, at, writable)
    struct.pack_into("<Q", data, 24, writable["vaddr"] + writable["filesz"] + 16)
    return data


# Loaders the kernel would map into overlapping memory, read past the file (SIGBUS), or start
# on zero pages (executed for as long as they last): each is refused.
DAMAGED_LOADERS = {
    "a segment whose file part is larger than its memory": (file_part_larger_than_memory, "corrupt loadable segment"),
    "segments out of order": (out_of_order, "corrupt loadable segment"),
    "overlapping segments": (overlapping, "corrupt loadable segment"),
    "a segment past the end of the file": (past_the_end_of_the_file, "corrupt loadable segment"),
    "a segment whose last page wraps around": (ending_at_the_top_of_the_address_space, "corrupt loadable segment"),
    "an entry point in the zero-filled part of its code": (entry_in_the_zero_filled_part,
                                                          "its entry point is not in its code"),
}


@pytest.mark.parametrize("damage", DAMAGED_LOADERS)
def test_a_loader_whose_segments_cannot_be_mapped_as_they_say_is_refused(shim_check, real_loader_head, tmp_path,
                                                                          damage):
    make, fault = DAMAGED_LOADERS[damage]
    path = tmp_path / "ld.so"
    path.write_bytes(bytes(make(bytearray(real_loader_head))))
    path.chmod(0o755)
    assert shim_check(os.fsencode(path)) == f"is not an ELF program loader ({fault})"


@settings(max_examples=300)
@given(changes=st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.none() | st.integers(0, 4096))
def test_any_damage_to_the_headers_is_a_fault_or_a_loader_nixld_run_accepts_and_the_shim_maps(
        shim_c_library, real_loader_head, tmp_path_factory, changes, cut):
    """Run as built and under the sanitizers: the check and the mapping (then undone) of a
    damaged loader end in a fault or in a loader mapped where its reservation is, never in a
    write out of bounds or a segment mapped over memory it does not own."""
    data = bytearray(real_loader_head)
    for offset, value in changes:
        data[offset] = value
    if cut is not None:
        data = data[:cut]
    path = tmp_path_factory.mktemp("damaged") / "ld.so"
    path.write_bytes(bytes(data))
    os.chmod(path, 0o755)
    fault = shim_c_library.call("check_loader", os.fsencode(path))
    if fault is None:
        header = elf.read_header(os.fsencode(path))
        try:
            check_loader(os.fsencode(path), "NIX_LD", "x86_64_linux", PROGRAM.encode(), elf.read_header(PROGRAM.encode()))
        except LoaderError as error:
            pytest.fail(f"the shim accepts a loader nixld run refuses: {error.message}")
        assert header.type == elf.ET_DYN and header.entry and header.interpreter is None
        assert shim_c_library.call("map_loader", os.fsencode(path)) in (None, "cannot be mapped")
