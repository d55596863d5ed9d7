"""Hand-made ELF files for planning tests: any class, byte order, machine and loader options.

Planning reads only the ELF and program headers (and, of a loader, the option names it
contains), so these files need no code: they are never executed.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

EM_386 = 3
EM_ARM = 40
EM_X86_64 = 62
EM_AARCH64 = 183
EM_RISCV = 243
EM_PPC64 = 21

ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
PF_X, PF_W, PF_R = 1, 2, 4

GLIBC_OPTIONS = (b"--library-path", b"--argv0")


def elf_bytes(
    *,
    elf_class: int = 64,
    little_endian: bool = True,
    machine: int = EM_X86_64,
    elf_type: int = ET_DYN,
    entry: int = 0x1040,
    interpreter: bytes | None = b"/nix/store/0-glibc/lib/ld-linux-x86-64.so.2",
    dynamic: bool = True,
    payload: bytes = b"",
) -> bytes:
    """An ELF file with a read-only PT_LOAD that maps `payload`, an optional PT_INTERP and
    PT_DYNAMIC."""
    order = "<" if little_endian else ">"
    header_size, phdr_size = (64, 56) if elf_class == 64 else (52, 32)
    phdrs = [(PT_LOAD, payload)]
    if interpreter is not None:
        phdrs.append((PT_INTERP, interpreter + b"\0"))
    if dynamic:
        phdrs.append((PT_DYNAMIC, b"\0" * (16 if elf_class == 64 else 8)))
    data_offset = header_size + phdr_size * len(phdrs)
    tables, blobs = [], b""
    for p_type, blob in phdrs:
        offset = data_offset + len(blobs)
        flags = PF_R if p_type == PT_LOAD else PF_R | PF_X
        if elf_class == 64:
            tables.append(struct.pack(order + "IIQQQQQQ", p_type, flags, offset, offset, offset,
                                      len(blob), len(blob), 8))
        else:
            tables.append(struct.pack(order + "IIIIIIII", p_type, offset, offset, offset,
                                      len(blob), len(blob), flags, 4))
        blobs += blob
    ident = b"\x7fELF" + bytes([2 if elf_class == 64 else 1, 1 if little_endian else 2, 1, 0]) + bytes(8)
    fields = (elf_type, machine, 1, entry, header_size, 0, 0, header_size, phdr_size, len(phdrs), 0, 0, 0)
    header_format = "HHIQQQIHHHHHH" if elf_class == 64 else "HHIIIIIHHHHHH"
    return ident + struct.pack(order + header_format, *fields) + b"".join(tables) + blobs


def write_elf(path: Path, mode: int = 0o755, **fields) -> bytes:
    """Write elf_bytes(**fields) to `path` with `mode`; returns the path as bytes."""
    path.write_bytes(elf_bytes(**fields))
    os.chmod(path, mode)
    return os.fsencode(path)


# What marks each C library's loader in its read-only data.
LOADER_MARKS = {"glibc": b"GLIBC_PRIVATE", "musl": b"musl libc (x86_64)", "unknown": b"some loader"}


def write_loader(path: Path, options=GLIBC_OPTIONS, kind: str = "glibc", **fields) -> bytes:
    """A file that passes for a program loader of `kind` (a shared object with an entry point
    and no interpreter) whose read-only data holds its mark and `options`, each stored as that
    C library stores it: NUL-terminated for glibc's strcmp, without the leading "--" for
    musl's comparison of argv[i]+2."""
    strings = [LOADER_MARKS[kind]]
    strings += [option[2:] if kind == "musl" and option.startswith(b"--") else option for option in options]
    fields.setdefault("interpreter", None)
    return write_elf(path, payload=b"\0" + b"\0".join(strings) + b"\0", **fields)


DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 10, 14, 15, 29
DT_FLAGS_1 = 0x6FFFFFFB
DF_1_NODEFLIB = 0x800


def dynamic_elf_bytes(
    *,
    elf_class: int = 64,
    little_endian: bool = True,
    machine: int = EM_X86_64,
    elf_type: int = ET_DYN,
    entry: int = 0x1040,
    interpreter: bytes | None = None,
    needed: tuple[bytes, ...] = (),
    soname: bytes | None = None,
    rpath: bytes | None = None,
    runpath: bytes | None = None,
    flags_1: int = 0,
) -> bytes:
    """An ELF file a resolver can read without section headers, as the loader reads it: one
    PT_LOAD mapping the whole file at address 0, an optional PT_INTERP, and a PT_DYNAMIC whose
    DT_STRTAB and DT_STRSZ point at a string table holding the NEEDED, SONAME, RPATH and
    RUNPATH strings. No code: it is inspected, never run."""
    order = "<" if little_endian else ">"
    header_size, phdr_size = (64, 56) if elf_class == 64 else (52, 32)
    dyn = struct.Struct(order + ("qQ" if elf_class == 64 else "iI"))

    strings = b"\0"
    offsets: dict[bytes, int] = {}

    def string(value: bytes) -> int:
        nonlocal strings
        if value not in offsets:
            offsets[value] = len(strings)
            strings += value + b"\0"
        return offsets[value]

    tags = [(DT_NEEDED, string(name)) for name in needed]
    for tag, value in ((DT_SONAME, soname), (DT_RPATH, rpath), (DT_RUNPATH, runpath)):
        if value is not None:
            tags.append((tag, string(value)))
    if flags_1:
        tags.append((DT_FLAGS_1, flags_1))

    phdr_count = 3 if interpreter is not None else 2
    interp_offset = header_size + phdr_size * phdr_count
    interp = b"" if interpreter is None else interpreter + b"\0"
    strtab_offset = interp_offset + len(interp)
    dynamic_offset = strtab_offset + len(strings)
    dynamic_offset += -dynamic_offset % 8
    tags += [(DT_STRTAB, strtab_offset), (DT_STRSZ, len(strings)), (DT_NULL, 0)]
    dynamic = b"".join(dyn.pack(tag, value) for tag, value in tags)
    size = dynamic_offset + len(dynamic)

    def phdr(p_type: int, flags: int, offset: int, length: int, align: int) -> bytes:
        if elf_class == 64:
            return struct.pack(order + "IIQQQQQQ", p_type, flags, offset, offset, offset, length, length, align)
        return struct.pack(order + "IIIIIIII", p_type, offset, offset, offset, length, length, flags, align)

    phdrs = [phdr(PT_LOAD, 5, 0, size, 0x1000)]
    if interpreter is not None:
        phdrs.append(phdr(PT_INTERP, 4, interp_offset, len(interp), 1))
    phdrs.append(phdr(PT_DYNAMIC, 6, dynamic_offset, len(dynamic), 8))

    ident = b"\x7fELF" + bytes([2 if elf_class == 64 else 1, 1 if little_endian else 2, 1, 0]) + bytes(8)
    fields = (elf_type, machine, 1, entry, header_size, 0, 0, header_size, phdr_size, phdr_count, 0, 0, 0)
    header_format = "HHIQQQIHHHHHH" if elf_class == 64 else "HHIIIIIHHHHHH"
    head = ident + struct.pack(order + header_format, *fields) + b"".join(phdrs) + interp + strings
    return head + bytes(dynamic_offset - len(head)) + dynamic


def write_dynamic_elf(path: Path, mode: int = 0o755, **fields) -> bytes:
    """Write dynamic_elf_bytes(**fields) to `path` with `mode`; returns the path as bytes."""
    path.write_bytes(dynamic_elf_bytes(**fields))
    os.chmod(path, mode)
    return os.fsencode(path)


# Elf64_Phdr and Elf32_Phdr (little-endian), their fields in file order.
_PROGRAM_HEADERS = {
    2: (struct.Struct("<IIQQQQQQ"), ("type", "flags", "offset", "vaddr", "paddr", "filesz", "memsz", "align")),
    1: (struct.Struct("<IIIIIIII"), ("type", "offset", "vaddr", "paddr", "filesz", "memsz", "flags", "align")),
}


def load_headers(data: bytes) -> list[tuple[int, dict]]:
    """The PT_LOAD headers of a little-endian ELF file of either class, in file order: where
    each one is, and its fields by name (type, flags, offset, vaddr, paddr, filesz, memsz, align)."""
    layout, names = _PROGRAM_HEADERS[data[4]]
    phoff = struct.unpack_from("<Q" if data[4] == 2 else "<I", data, 32 if data[4] == 2 else 28)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 54 if data[4] == 2 else 42)
    headers = [(phoff + index * phentsize, dict(zip(names, layout.unpack_from(data, phoff + index * phentsize))))
               for index in range(phnum)]
    return [(at, fields) for at, fields in headers if fields["type"] == PT_LOAD]


def rewrite_program_header(data: bytearray, at: int, fields: dict) -> None:
    """Write the program header `fields` (as load_headers gives them) at `at`."""
    layout, names = _PROGRAM_HEADERS[data[4]]
    layout.pack_into(data, at, *(fields[name] for name in names))


def overwrite_program_headers(source, target: Path, byte: int) -> str:
    """A copy of the 64-bit ELF file `source` at `target` whose program header table is `byte`
    repeated: no PT_LOAD, no PT_INTERP. Started as it is, the kernel maps nothing and the
    process dies by SIGSEGV. Returns the path as str."""
    data = bytearray(Path(source).read_bytes())
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    data[phoff:phoff + phentsize * phnum] = bytes([byte]) * (phentsize * phnum)
    target.write_bytes(bytes(data))
    target.chmod(0o755)
    return str(target)
