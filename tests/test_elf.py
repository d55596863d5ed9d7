"""The hot path's ELF reader: the facts the launch needs, and clean errors for everything else."""

from __future__ import annotations

import os
import struct
import subprocess

import pytest
from crafted import EM_386, EM_AARCH64, EM_ARM, EM_PPC64, EM_RISCV, EM_X86_64, ET_EXEC, ET_REL, elf_bytes

from nixld import elf


def read(tmp_path, data: bytes) -> elf.ElfHeader:
    path = tmp_path / "file"
    path.write_bytes(data)
    return elf.read_header(os.fsencode(path))


def test_reads_the_interpreter_of_a_real_program():
    header = elf.read_header(b"/usr/bin/true")
    assert header.interpreter == b"/lib64/ld-linux-x86-64.so.2"
    assert header.system == "x86_64_linux"
    assert header.machine_name == "x86_64"
    assert header.dynamic


def test_the_real_loader_has_an_entry_point_and_no_interpreter():
    header = elf.read_header(b"/lib64/ld-linux-x86-64.so.2")
    assert header.interpreter is None
    assert header.entry != 0
    assert header.type == elf.ET_DYN


@pytest.mark.parametrize(
    "elf_class, little_endian, machine, system, name",
    [
        (64, True, EM_X86_64, "x86_64_linux", "x86_64"),
        (32, True, EM_386, "i686_linux", "i386"),
        (64, True, EM_AARCH64, "aarch64_linux", "aarch64"),
        (32, True, EM_ARM, "armv7l_linux", "arm"),
        (64, True, EM_RISCV, "riscv64_linux", "riscv64"),
        (64, True, EM_PPC64, "powerpc64le_linux", "ppc64le"),
        (64, False, EM_PPC64, "powerpc64_linux", "ppc64"),
        (32, True, EM_X86_64, None, "x32"),
    ],
)
def test_the_system_comes_from_class_and_machine(tmp_path, elf_class, little_endian, machine, system, name):
    header = read(tmp_path, elf_bytes(elf_class=elf_class, little_endian=little_endian, machine=machine))
    assert (header.elf_class, header.little_endian) == (elf_class, little_endian)
    assert header.system == system
    assert header.machine_name == name
    assert header.interpreter == b"/nix/store/0-glibc/lib/ld-linux-x86-64.so.2"


def test_a_static_program_has_no_interpreter(tmp_path):
    header = read(tmp_path, elf_bytes(interpreter=None, dynamic=False, elf_type=ET_EXEC))
    assert header.interpreter is None and header.dynamic is None


def test_an_x86_64_kernel_runs_i386_but_not_aarch64(tmp_path):
    assert elf.host_runs(read(tmp_path, elf_bytes(elf_class=32, machine=EM_386)), "x86_64")
    assert not elf.host_runs(read(tmp_path, elf_bytes(machine=EM_AARCH64)), "x86_64")
    assert elf.host_runs(read(tmp_path, elf_bytes(machine=EM_AARCH64)), "aarch64")
    assert not elf.host_runs(read(tmp_path, elf_bytes(machine=EM_X86_64)), "aarch64")


def test_a_script_is_not_elf_and_keeps_its_first_bytes(tmp_path):
    with pytest.raises(elf.NotElf) as raised:
        read(tmp_path, b"#!/bin/sh\necho hi\n")
    assert raised.value.head.startswith(b"#!")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: data[:10], "truncated ELF file (it ends inside the ELF identification)"),
        (lambda data: data[:40], "truncated ELF file (it ends inside the ELF header)"),
        (lambda data: data[:100], "truncated ELF file (it ends inside the program headers)"),
        (lambda data: data[:4] + b"\x07" + data[5:], "corrupt ELF header (unknown class 7)"),
        (lambda data: data[:5] + b"\x00" + data[6:], "corrupt ELF header (unknown byte order 0)"),
        (lambda data: data[:56] + b"\x00\x00" + data[58:], "corrupt ELF file (no loadable segment)"),
        (lambda data: data[:54] + b"\x20\x00" + data[56:], "corrupt ELF header (program header size 32, expected 56)"),
        (lambda data: data[:54] + b"\x40\x00" + data[56:], "corrupt ELF header (program header size 64, expected 56)"),
    ],
)
def test_damaged_files_raise_one_clear_error(tmp_path, damage, message):
    with pytest.raises(elf.ElfError) as raised:
        read(tmp_path, damage(elf_bytes()))
    assert str(raised.value) == message


def test_an_interpreter_that_runs_past_the_end_is_truncated(tmp_path):
    data = elf_bytes()
    cut = data.index(b"/nix/store") + 5
    with pytest.raises(elf.ElfError, match="ends inside the interpreter path"):
        read(tmp_path, data[:cut])


@pytest.mark.parametrize("end", [b"X", b"\0X"], ids=["no-nul", "nul-not-last"])
def test_an_interpreter_without_its_nul_is_corrupt(tmp_path, end):
    """The kernel takes the interpreter path only when its last byte is a NUL."""
    data = bytearray(elf_bytes(dynamic=False))
    data[-len(end):] = end
    with pytest.raises(elf.ElfError, match="not NUL-terminated"):
        read(tmp_path, bytes(data))


# Offsets of the 64-bit header fields that hold a file offset, in elf_bytes' file: e_phoff, and
# p_offset of its PT_INTERP (second program header) and PT_DYNAMIC (third).
PROGRAM_HEADERS_OFFSET, INTERPRETER_OFFSET, DYNAMIC_OFFSET = 32, 64 + 56 + 8, 64 + 2 * 56 + 8


@pytest.mark.parametrize("field, message", [
    (PROGRAM_HEADERS_OFFSET, "truncated ELF file (it ends inside the program headers)"),
    (INTERPRETER_OFFSET, "truncated ELF file (it ends inside the interpreter path)"),
])
@pytest.mark.parametrize("offset", [1 << 40, (1 << 63) - 1, 1 << 63, (1 << 64) - 1])
def test_an_offset_past_any_file_is_truncation(tmp_path, field, message, offset):
    data = elf_bytes()
    with pytest.raises(elf.ElfError) as raised:
        read(tmp_path, data[:field] + struct.pack("<Q", offset) + data[field + 8:])
    assert str(raised.value) == message


@pytest.mark.parametrize("offset", [1 << 40, 1 << 63, (1 << 64) - 1])
def test_a_dynamic_table_past_any_file_holds_no_flags(tmp_path, offset):
    data = elf_bytes()
    path = tmp_path / "file"
    path.write_bytes(data[:DYNAMIC_OFFSET] + struct.pack("<Q", offset) + data[DYNAMIC_OFFSET + 8:])
    fd = os.open(path, os.O_RDONLY)
    try:
        assert elf.dynamic_flags_1(fd, elf.read_header_from(fd)) == 0
    finally:
        os.close(fd)


def _with_segment(data: bytes, offset: int, file_size: int, memory_size: int) -> bytes:
    """elf_bytes' file with its PT_LOAD (the first program header) changed."""
    load = 64 + 8  # p_offset, p_vaddr, p_paddr, p_filesz, p_memsz follow p_type and p_flags
    fields = struct.pack("<QQQQQ", offset, offset, offset, file_size, memory_size)
    return data[:load] + fields + data[load + len(fields):]


def test_a_loadable_segment_that_ends_past_the_end_of_the_file_is_truncation(tmp_path):
    data = elf_bytes()
    with pytest.raises(elf.ElfError, match="truncated ELF file .* ends past the end of the file"):
        read(tmp_path, _with_segment(data, 0, len(data) + 1, len(data) + 1))


def test_a_loadable_segment_with_more_file_than_memory_is_corrupt(tmp_path):
    with pytest.raises(elf.ElfError, match="more bytes in the file than in memory"):
        read(tmp_path, _with_segment(elf_bytes(), 0, 64, 32))


def test_an_object_file_without_program_headers_is_read_and_left_to_the_caller(tmp_path):
    data = elf_bytes(elf_type=ET_REL)
    header = read(tmp_path, data[:56] + b"\x00\x00" + data[58:])
    assert (header.type, header.loads) == (ET_REL, ())


def segment(offset: int, size: int, flags: int) -> elf.Segment:
    return elf.Segment(offset, size, size, flags)


R, RX, RW = elf.PF_R, elf.PF_R | elf.PF_X, elf.PF_R | elf.PF_W


@pytest.mark.parametrize(
    "loads, expected",
    [
        # GNU ld -z separate-code: headers (R), code (RX), read-only data (R), data (RW)
        ([segment(0, 100, R), segment(4096, 500, RX), segment(8192, 300, R), segment(12288, 50, RW)],
         [(0, 100), (8192, 300)]),
        # GNU ld -z noseparate-code: read-only data shares the code's segment
        ([segment(0, 900, RX), segment(4096, 50, RW)], [(0, 900)]),
        # lld: headers and read-only data (R), then code (RX), then data (RW)
        ([segment(0, 700, R), segment(4096, 500, RX), segment(8192, 50, RW)], [(0, 700)]),
        # nothing but writable data
        ([segment(0, 100, RW)], []),
    ],
)
def test_constant_data_is_where_the_linker_puts_read_only_data(loads, expected):
    assert elf.constant_data(loads) == expected


@pytest.mark.parametrize("layout", ["-Wl,-z,separate-code", "-Wl,-z,noseparate-code"])
def test_a_compiled_programs_string_constants_are_in_its_constant_data(tmp_path, layout):
    source = tmp_path / "strings.c"
    source.write_text('#include <stdio.h>\nint main(void) { puts("a constant to find"); return 0; }\n')
    program = tmp_path / "strings"
    subprocess.run(["gcc", "-O2", layout, "-o", program, source], check=True, timeout=120)
    data = program.read_bytes()
    where = data.index(b"a constant to find")
    ranges = elf.constant_data(elf.read_header(os.fsencode(program)).loads)
    assert any(offset <= where < offset + size for offset, size in ranges)
    assert sum(size for _, size in ranges) < len(data)


@pytest.mark.parametrize("kernel, systems", [
    ("x86_64", ("x86_64_linux", "i686_linux")),
    ("aarch64", ("aarch64_linux", "armv7l_linux")),
    ("ppc64", ("powerpc64_linux",)),  # its 32-bit programs have no Nix system
    ("i686", ("i686_linux",)),
    ("sparc64", ()),
])
def test_the_systems_a_kernel_runs_come_its_own_first(kernel, systems):
    assert elf.host_systems(kernel) == systems


@pytest.mark.parametrize("system", elf.SYSTEM_ABIS)
def test_each_systems_abi_is_what_a_header_of_that_system_says(system):
    elf_class, little_endian, machine = elf.SYSTEM_ABIS[system]
    assert elf.ElfHeader(elf_class, little_endian, machine, elf.ET_DYN, 0, None, None, ()).system == system
