"""ELF objects as resolution needs them: parsed once per file per process, with pyelftools.

pyelftools is imported lazily (it costs ~25 ms): this module is for `nixld inspect`, never
for the launch path. What a parser raises on bad bytes, whatever layer raises it, becomes one
ObjectError; anything else is a bug of ours and is left to surface as one.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from dataclasses import dataclass

from nixld import elf

DF_1_NODEFLIB = 0x800
DF_1_PIE = elf.DF_1_PIE

# How much of the dynamic table is read at a time: 256 entries of a 64-bit object.
_DYNAMIC_CHUNK = 4096
# How much of a dynamic string is read at a time: most are sonames, well under this.
_STRING_CHUNK = 256


class ObjectError(ValueError):
    """The file cannot be read as an ELF object; the message says why (no file name)."""


@dataclass(frozen=True)
class ElfObject:
    """What the loader reads from one ELF file. Strings are bytes, as in the file."""

    elf_class: int
    little_endian: bool
    machine: int
    type: int
    entry: int
    interpreter: bytes | None
    dynamic: tuple[int, int] | None
    soname: bytes | None
    needed: tuple[bytes, ...]
    rpath: tuple[bytes, ...]  # DT_RPATH entries, unexpanded; empty when DT_RUNPATH is present
    runpath: tuple[bytes, ...] | None  # DT_RUNPATH entries, unexpanded; None when absent
    flags_1: int
    loads: tuple[elf.Segment, ...]
    mode: int

    @property
    def header(self) -> elf.ElfHeader:
        """The launch path's view of the same file, for its machine names and system."""
        return elf.ElfHeader(self.elf_class, self.little_endian, self.machine, self.type,
                             self.entry, self.interpreter, self.dynamic, self.loads)

    @property
    def abi(self) -> tuple[int, bool, int]:
        return (self.elf_class, self.little_endian, self.machine)


class ObjectCache:
    """Parses each file once: keyed by device, inode, size and modification time, so that
    every path to the same file (symlinks, hard links) shares one parse."""

    def __init__(self) -> None:
        self._parsed: dict[tuple, ElfObject] = {}
        self._headers: dict[tuple, elf.ElfHeader | None] = {}

    def load(self, path: bytes) -> ElfObject:
        """The parsed object at `path`; raises OSError or ObjectError."""
        status = os.stat(path)
        if not stat.S_ISREG(status.st_mode):
            raise ObjectError("not a regular file")
        key = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
        parsed = self._parsed.get(key)
        if parsed is None:
            with _open(path) as stream:
                parsed = self._parsed[key] = _parse(stream, status.st_mode)
        return parsed

    def abi_of(self, path: bytes) -> tuple[int, bool, int] | None:
        """(class, little endian, machine) of a candidate library, as the loader checks it
        before loading; None when the file cannot be opened, is not ELF or is corrupt."""
        try:
            status = os.stat(path)
        except OSError:
            return None
        key = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
        if key not in self._headers:
            try:
                self._headers[key] = elf.read_header(path) if stat.S_ISREG(status.st_mode) else None
            except (OSError, elf.ElfError):
                self._headers[key] = None
        header = self._headers[key]
        return None if header is None else header.abi


def mentions(path: bytes, needle: bytes, ranges: list[tuple[int, int]]) -> bool:
    """True when `needle` is in one of the file's `ranges` ((offset, size) pairs, such as
    elf.constant_data gives): mapped, not read, and only there, so that the cost follows what
    the loader maps, not the size of the file."""
    with _open(path) as stream:
        size = os.fstat(stream.fileno()).st_size
        ranges = [(offset, min(length, size - offset)) for offset, length in ranges if offset < size]
        if not ranges:
            return False
        with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return any(data.find(needle, offset, offset + length) != -1 for offset, length in ranges)


def _open(path: bytes):
    """The regular file at `path`, open for reading; raises OSError, or ObjectError for
    anything else (a FIFO put there since it was looked at would block a plain open)."""
    try:
        return os.fdopen(elf.open_regular(path), "rb")
    except elf.NotRegularFile as error:
        raise ObjectError(str(error)) from None


def _parse(stream, mode: int) -> ElfObject:
    # For start-up time: pyelftools is only for inspect.
    from elftools.common.exceptions import ELFError, ELFParseError
    from elftools.construct.core import ConstructError

    try:
        return _parse_with_pyelftools(stream, mode)
    except elf.ElfError as error:
        raise ObjectError(str(error)) from None
    except (ELFError, ELFParseError, ConstructError, struct.error) as error:
        raise ObjectError(_describe(error)) from None


def _parse_with_pyelftools(stream, mode: int) -> ElfObject:
    """Decode the ELF header, the program headers and the dynamic table with pyelftools'
    structures, reading only those and the dynamic string table.

    pyelftools' ELFFile and DynamicSegment would also build every section header to find
    the string table: 80% of the time of inspecting /usr/bin, for nothing the loader uses.
    The loader finds the string table through DT_STRTAB and the PT_LOAD segments; so do we.
    """
    data = _Reader(stream)
    elf_class, little_endian = elf.read_identification(stream.read(16))
    data.read(0, 16, "the ELF identification")
    basic = _structs(elf_class, little_endian)
    header = basic.Elf_Ehdr.parse(data.read(0, basic.Elf_Ehdr.sizeof(), "the ELF header"))
    structs = _structs(elf_class, little_endian, header.e_type, header.e_machine, header.e_ident.EI_OSABI)
    phdr_size = structs.Elf_Phdr.sizeof()
    if header.e_phnum and header.e_phentsize != phdr_size:
        raise ObjectError(f"corrupt ELF header (program header size {header.e_phentsize}, expected {phdr_size})")
    table = data.read(header.e_phoff, header.e_phnum * phdr_size, "the program headers")
    segments = [structs.Elf_Phdr.parse(table[i:i + phdr_size]) for i in range(0, len(table), phdr_size)]

    elf_type = _number(header.e_type, "ENUM_E_TYPE")
    interpreter = None
    dynamic = None
    loads = []
    for segment in segments:
        if segment.p_type == "PT_LOAD":
            loads.append(elf.Segment(segment.p_offset, segment.p_filesz, segment.p_memsz, segment.p_flags))
        elif segment.p_type == "PT_INTERP" and interpreter is None:
            interpreter = elf.read_interpreter(stream.fileno(), segment.p_offset, segment.p_filesz)
        elif segment.p_type == "PT_DYNAMIC" and dynamic is None:
            dynamic = segment
    elf.check_loads(elf_type, loads, data.size)

    tags = [] if dynamic is None else _dynamic_tags(data, structs, dynamic)
    values = dict(reversed(tags))  # the first DT_STRTAB, DT_SONAME... wins, as in glibc
    strings = _StringTable(data, segments, values.get("DT_STRTAB"), values.get("DT_STRSZ"))
    needed = tuple(strings.at(value) for tag, value in tags if tag == "DT_NEEDED")
    rpath = [entry for tag, value in tags if tag == "DT_RPATH" for entry in strings.at(value).split(b":")]
    runpath = [entry for tag, value in tags if tag == "DT_RUNPATH" for entry in strings.at(value).split(b":")]
    has_runpath = any(tag == "DT_RUNPATH" for tag, _ in tags)
    return ElfObject(
        elf_class=elf_class,
        little_endian=little_endian,
        machine=_number(header.e_machine, "ENUM_E_MACHINE"),
        type=elf_type,
        entry=header.e_entry,
        interpreter=interpreter,
        dynamic=None if dynamic is None else (dynamic.p_offset, dynamic.p_filesz),
        soname=strings.at(values["DT_SONAME"]) if "DT_SONAME" in values else None,
        needed=needed,
        # glibc ignores DT_RPATH in an object that also has DT_RUNPATH.
        rpath=() if has_runpath else tuple(rpath),
        runpath=tuple(runpath) if has_runpath else None,
        flags_1=values.get("DT_FLAGS_1", 0),
        loads=tuple(loads),
        mode=mode,
    )


def _dynamic_tags(data: _Reader, structs, dynamic) -> list[tuple[object, int]]:
    """The dynamic table's (tag, value) pairs up to DT_NULL, read a page at a time, as far as
    the loader would walk it: a PT_DYNAMIC that claims the whole file costs no more."""
    entry_size = structs.Elf_Dyn.sizeof()
    end = dynamic.p_offset + dynamic.p_filesz - dynamic.p_filesz % entry_size
    tags = []
    for start in range(dynamic.p_offset, end, _DYNAMIC_CHUNK):
        table = data.read(start, min(_DYNAMIC_CHUNK, end - start), "the dynamic section")
        for offset in range(0, len(table), entry_size):
            entry = structs.Elf_Dyn.parse(table[offset:offset + entry_size])
            if entry.d_tag == "DT_NULL":
                return tags
            tags.append((entry.d_tag, entry.d_val))
    return tags


class _Reader:
    """Bounded reads of one file: a read that runs past the end is a truncated file."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.size = os.fstat(stream.fileno()).st_size

    def read(self, offset: int, size: int, what: str) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise ObjectError(f"truncated or corrupt ELF file ({what}: outside the file)")
        self.stream.seek(offset)
        return self.stream.read(size)


class _StringTable:
    """The dynamic string table, found as the loader finds it: DT_STRTAB is an address,
    which a PT_LOAD segment maps to a place in the file. Only the strings asked for are read
    (a corrupt DT_STRSZ may claim the whole file)."""

    def __init__(self, data: _Reader, segments, address, size) -> None:
        self.data = data
        self.start = self.length = 0
        if address is None:
            return
        for segment in segments:
            if segment.p_type == "PT_LOAD" and segment.p_vaddr <= address < segment.p_vaddr + segment.p_filesz:
                self.start = segment.p_offset + (address - segment.p_vaddr)
                available = segment.p_vaddr + segment.p_filesz - address
                self.length = min(size or available, available)
                return
        raise ObjectError("corrupt dynamic section (DT_STRTAB is not in any loaded segment)")

    def at(self, offset: int) -> bytes:
        if offset >= self.length:
            raise ObjectError("corrupt dynamic section (a string offset lies outside DT_STRTAB)")
        string = b""
        while offset < self.length:
            piece = self.data.read(self.start + offset, min(_STRING_CHUNK, self.length - offset),
                                   "the dynamic string table")
            end = piece.find(b"\0")
            if end != -1:
                return string + piece[:end]
            string += piece
            offset += len(piece)
        raise ObjectError("corrupt dynamic section (a string runs past the end of DT_STRTAB)")


_STRUCTS: dict[tuple, object] = {}


def _structs(elf_class: int, little_endian: bool, *kind):
    """pyelftools' structures for one (class, byte order[, type, machine, OS ABI]), built
    once: building them costs more than parsing a file with them."""
    key = (elf_class, little_endian) + kind
    structs = _STRUCTS.get(key)
    if structs is None:
        from elftools.elf.structs import ELFStructs

        structs = ELFStructs(little_endian=little_endian, elfclass=elf_class)
        structs.create_basic_structs()
        if kind:
            structs.create_advanced_structs(*kind)
        structs = _STRUCTS[key] = structs
    return structs


def _number(name, table: str) -> int:
    """pyelftools names enumerated values (`EM_X86_64`); the launch path's tables use numbers."""
    if isinstance(name, int):
        return name
    from elftools.elf import enums

    return getattr(enums, table).get(name, 0)


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"corrupt ELF file ({text})"
