"""One specification, two implementations: the Python hook's reading of nix-ld's contract and of
ELF files (nixld/python_hook/_nixld_python_hook_rescue.py, which cannot import nixld: it runs in
another Python) against nixld's own (nixld.config, nixld.elf, nixld.objects), on the same
environments and the same files."""

from __future__ import annotations

import importlib.util
import os

import pytest
from conftest import require
from crafted import EM_386, EM_AARCH64, EM_PPC64, elf_bytes, write_dynamic_elf
from environments import environments
from hypothesis import example, given
from hypothesis import strategies as st

from nixld import config, elf, pyhook
from nixld.objects import ObjectCache, ObjectError


def load_rescue():
    path = os.path.join(pyhook.SOURCE_DIR, "_nixld_python_hook_rescue.py")
    spec = importlib.util.spec_from_file_location("_nixld_python_hook_rescue", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rescue = load_rescue()
SYSTEMS = [None, *elf.SYSTEM_ABIS]


@given(env=environments, system=st.sampled_from(SYSTEMS))
@example(env={b"NIX_LD_LIBRARY_PATH_x86_64-linux": b"/old", b"NIX_LD_LIBRARY_PATH": b"/generic"}, system="x86_64_linux")
@example(env={b"NIX_LD_LIBRARY_PATH_x86_64_linux": b"", b"NIX_LD_LIBRARY_PATH_x86_64-linux": b"/old"},
         system="x86_64_linux")
@example(env={b"NIX_LD_LIBRARY_PATH": b":,:"}, system="i686_linux")
@example(env={b"NIX_LD_LIBRARY_PATH": b"/a,/b:/\xff"}, system=None)
def test_the_hook_reads_the_library_directories_as_nixld_does(env, system):
    assert rescue.nix_ld_library_dirs(env, system) == config.nix_ld_library_dirs(env, system)


@given(env=environments)
@example(env={b"NIX_LD_LOG": b" Info\t"})
@example(env={b"NIX_LD_LOG": b"debug\x0b"})
@example(env={b"NIX_LD_LOG": b"\xc4\xb0NFO"})
def test_the_hook_reads_nix_ld_log_as_nixld_does(env):
    assert rescue.log_level(env) == config.log_level(env)[0]


def test_the_hook_knows_the_systems_nixld_knows():
    assert rescue.SYSTEM_ABIS == elf.SYSTEM_ABIS
    for system, abi in elf.SYSTEM_ABIS.items():
        assert rescue.system_of(abi) == system
        header = elf.ElfHeader(*abi, elf.ET_DYN, 0, None, None, ())
        assert rescue.abi_name(abi) == f"{header.machine_name} ({abi[0]}-bit)"
    assert rescue.system_of((32, True, elf.EM_X86_64)) is None  # x32: no Nix system


def shared_objects(directory: str) -> list[bytes]:
    found = []
    for entry in sorted(os.scandir(os.fsencode(directory)), key=lambda entry: entry.name):
        if elf.shared_object_name(entry.name) and entry.is_file():
            found.append(entry.path)
    return found


@pytest.mark.parametrize("directory, package", [("/usr/lib/x86_64-linux-gnu", "libc6"), ("/usr/lib32", "libc6-i386")])
def test_the_hook_reads_the_class_machine_and_soname_nixld_reads(directory, package):
    """Every shared object of the system's, 64-bit and 32-bit alike."""
    require(os.path.isdir(directory), f"{directory}, a directory of shared objects", package=package)
    objects = ObjectCache()
    compared = 0
    for path in shared_objects(directory):
        try:
            theirs = objects.load(path)
        except (OSError, ObjectError):
            with pytest.raises((OSError, ValueError)):  # a linker script (libc.so), a broken one
                abi, e_type, soname = rescue.read_elf(path)
                assert e_type == elf.ET_DYN and soname is not None
            continue
        assert rescue.read_elf(path) == (theirs.abi, theirs.type, theirs.soname), path
        compared += 1
    assert compared > 10


def test_the_hook_reads_crafted_files_of_other_machines(tmp_path):
    for name, fields in {"i386": dict(elf_class=32, machine=EM_386), "aarch64": dict(machine=EM_AARCH64),
                         "ppc64": dict(little_endian=False, machine=EM_PPC64)}.items():
        write_dynamic_elf(tmp_path / name, soname=f"lib{name}.so.1".encode(), **fields)
        theirs = ObjectCache().load(os.fsencode(tmp_path / name))
        assert rescue.read_elf(str(tmp_path / name)) == (theirs.abi, theirs.type, f"lib{name}.so.1".encode())


@given(data=st.binary(max_size=600), cut=st.integers(min_value=0, max_value=600))
def test_a_file_that_is_not_a_well_formed_elf_file_is_a_value_error_never_a_crash(tmp_path_factory, data, cut):
    """Whatever a NIX_LD directory holds under a library's name: read_elf raises ValueError
    (or OSError), which the hook turns into `skipped`, and nothing else."""
    path = tmp_path_factory.mktemp("fuzz") / "libfuzz.so.1"
    valid = elf_bytes(elf_class=64, interpreter=None)
    path.write_bytes((valid[:cut] + data) if cut % 2 else data)
    try:
        abi, e_type, soname = rescue.read_elf(str(path))
    except ValueError:
        return
    assert isinstance(abi, tuple) and isinstance(e_type, int) and (soname is None or isinstance(soname, bytes))


@pytest.mark.parametrize("field, at", [("e_phoff", 32), ("the dynamic segment's p_offset", 64 + 56 + 8)])
def test_an_offset_beyond_any_file_is_a_value_error(tmp_path, field, at):
    """One that pread cannot even be given (a signed 64-bit offset)."""
    data = bytearray(elf_bytes(elf_class=64, interpreter=None))
    data[at:at + 8] = b"\xff" * 8
    (tmp_path / "libfar.so.1").write_bytes(bytes(data))
    with pytest.raises(ValueError):
        rescue.read_elf(str(tmp_path / "libfar.so.1"))


def test_a_fifo_is_not_waited_on(tmp_path):
    fifo = tmp_path / "libfifo.so.1"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        rescue.read_elf(str(fifo))


@pytest.mark.parametrize("message, name", [
    ("libstdc++.so.6: cannot open shared object file: No such file or directory", "libstdc++.so.6"),
    ("libgcc_s.so.1: cannot open shared object file: No such file or directory", "libgcc_s.so.1"),
    # The library was found; something else is wrong: the first field is a path.
    ("/usr/lib/libstdc++.so.6: version `GLIBCXX_3.4.32' not found (required by /x/ext.so)", None),
    ("/x/ext.so: undefined symbol: PyFoo", None),
    ("/x/lib32.so: wrong ELF class: ELFCLASS32", None),
    ("No module named 'foo'", None),
    ("", None),
    ("libnotalibrary: cannot open shared object file: No such file or directory", None),
])
def test_the_missing_library_is_read_from_the_loaders_message(message, name):
    assert rescue.missing_name(message) == name
