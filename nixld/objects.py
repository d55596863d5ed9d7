"""ELF objects as resolution needs them: parsed once per file per process, with pyelftools.

pyelftools is imported lazily (it costs ~25 ms): this module is for `nixld inspect`, never
for the launch path. Every parse error, whatever layer raises it, becomes one ObjectError.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from dataclasses import dataclass

from nixld import elf

DF_1_NODEFLIB = 0x800
DF_1_PIE = 0x08000000


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
    has_dynamic: bool
    soname: bytes | None
    needed: tuple[bytes, ...]
    rpath: tuple[bytes, ...]  # DT_RPATH entries, unexpanded; empty when DT_RUNPATH is present
    runpath: tuple[bytes, ...] | None  # DT_RUNPATH entries, unexpanded; None when absent
    flags_1: int
    mode: int

    @property
    def header(self) -> elf.ElfHeader:
        """The launch path's view of the same file, for its machine names and system."""
        return elf.ElfHeader(self.elf_class, self.little_endian, self.machine, self.type,
                             self.entry, self.interpreter, self.has_dynamic)

    @property
    def abi(self) -> tuple[int, bool, int]:
        return (self.elf_class, self.little_endian, self.machine)


class ObjectCache:
    """Parses each file once: keyed by device, inode, size and modification time, so that
    every path to the same file (symlinks, hard links) shares one parse."""

    def __init__(self) -> None:
        self._parsed: dict[tuple, ElfObject] = {}
        self._headers: dict[tuple, elf.ElfHeader | None] = {}
        self._directories: dict[bytes, bool] = {}

    def load(self, path: bytes) -> ElfObject:
        """The parsed object at `path`; raises OSError or ObjectError."""
        with open(path, "rb") as stream:
            status = os.fstat(stream.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise ObjectError("not a regular file")
            key = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
            parsed = self._parsed.get(key)
            if parsed is None:
                parsed = self._parsed[key] = _parse(stream, status.st_mode)
            return parsed

    def is_directory(self, path: bytes) -> bool:
        """Whether the directory exists (the empty prefix is the working directory); asked
        once per directory per process."""
        known = self._directories.get(path)
        if known is None:
            known = self._directories[path] = os.path.isdir(path or b".")
        return known

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


def mentions(path: bytes, needle: bytes) -> bool:
    """True when the file's bytes contain `needle` (mapped, not read: programs can be large)."""
    with open(path, "rb") as stream:
        if os.fstat(stream.fileno()).st_size == 0:
            return False
        with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(needle) != -1


def _parse(stream, mode: int) -> ElfObject:
    # For start-up time: pyelftools is only for inspect.
    from elftools.common.exceptions import ELFError, ELFParseError

    try:
        return _parse_with_pyelftools(stream, mode)
    except (ELFError, ELFParseError, struct.error, ValueError, KeyError, IndexError,
            AttributeError, TypeError, UnicodeError, OverflowError, MemoryError) as error:
        raise ObjectError(_describe(error)) from None


def _parse_with_pyelftools(stream, mode: int) -> ElfObject:
    from elftools.elf.elffile import ELFFile

    head = stream.read(4)
    if head != elf.ELF_MAGIC:
        raise ObjectError("a #! script, not an ELF file" if head[:2] == b"#!" else "not an ELF file")
    stream.seek(0)
    elffile = ELFFile(stream)
    interpreter = None
    dynamic = None
    for segment in elffile.iter_segments():
        kind = segment["p_type"]
        if kind == "PT_INTERP" and interpreter is None:
            interpreter = segment.get_interp_name().encode("latin-1").split(b"\0")[0]
        elif kind == "PT_DYNAMIC" and dynamic is None:
            dynamic = segment
    soname = None
    needed: list[bytes] = []
    rpath: list[bytes] = []
    runpath: list[bytes] | None = None
    flags_1 = 0
    if dynamic is not None:
        for tag in dynamic.iter_tags():
            kind = tag.entry.d_tag
            if kind == "DT_NEEDED":
                needed.append(tag.needed.encode("latin-1"))
            elif kind == "DT_RPATH":
                rpath.extend(tag.rpath.encode("latin-1").split(b":"))
            elif kind == "DT_RUNPATH":
                runpath = (runpath or []) + tag.runpath.encode("latin-1").split(b":")
            elif kind == "DT_SONAME" and soname is None:
                soname = tag.soname.encode("latin-1")
            elif kind == "DT_FLAGS_1":
                flags_1 = tag.entry.d_val
            elif kind == "DT_NULL":
                break
    header = elffile.header
    return ElfObject(
        elf_class=elffile.elfclass,
        little_endian=elffile.little_endian,
        machine=_machine_number(header["e_machine"]),
        type=_type_number(header["e_type"]),
        entry=header["e_entry"],
        interpreter=interpreter,
        has_dynamic=dynamic is not None,
        soname=soname,
        needed=tuple(needed),
        # glibc ignores DT_RPATH in an object that also has DT_RUNPATH.
        rpath=() if runpath is not None else tuple(rpath),
        runpath=None if runpath is None else tuple(runpath),
        flags_1=flags_1,
        mode=mode,
    )


def _type_number(name) -> int:
    if isinstance(name, int):
        return name
    from elftools.elf.enums import ENUM_E_TYPE

    return ENUM_E_TYPE.get(name, 0)


def _machine_number(name) -> int:
    """pyelftools names e_machine (`EM_X86_64`); the launch path's tables use numbers."""
    if isinstance(name, int):
        return name
    from elftools.elf.enums import ENUM_E_MACHINE

    return ENUM_E_MACHINE.get(name, 0)


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"corrupt ELF file ({text})"
