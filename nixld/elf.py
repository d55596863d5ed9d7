"""The few facts the launch needs from an ELF file, read with `struct` alone.

This module is on the `nixld run` hot path: it reads the ELF header and the program headers
(a few hundred bytes) and nothing else. Full parsing belongs to `nixld inspect`.
"""

from __future__ import annotations

import os
import stat
import struct
from collections import namedtuple

ELF_MAGIC = b"\x7fELF"

ET_EXEC = 2
ET_DYN = 3
# What to call an ELF file of each e_type in a message.
TYPE_NAMES = {0: "an ELF file of no type", 1: "an ELF relocatable object", 2: "an ELF executable",
              3: "an ELF shared object", 4: "an ELF core dump"}
PT_LOAD = 1
PT_DYNAMIC = 2
PT_INTERP = 3
PF_X = 1
PF_W = 2
PF_R = 4
DT_NULL = 0
DT_FLAGS_1 = 0x6FFFFFFB
DF_1_PIE = 0x08000000

EM_386 = 3
EM_PPC = 20
EM_PPC64 = 21
EM_S390 = 22
EM_ARM = 40
EM_X86_64 = 62
EM_AARCH64 = 183
EM_RISCV = 243
EM_LOONGARCH = 258

# (e_machine, class) -> (machine name, Nix system with "-" written as "_", or None)
_MACHINES = {
    (EM_X86_64, 64): ("x86_64", "x86_64_linux"),
    (EM_X86_64, 32): ("x32", None),
    (EM_386, 32): ("i386", "i686_linux"),
    (EM_AARCH64, 64): ("aarch64", "aarch64_linux"),
    (EM_ARM, 32): ("arm", "armv7l_linux"),
    (EM_RISCV, 64): ("riscv64", "riscv64_linux"),
    (EM_RISCV, 32): ("riscv32", None),
    (EM_PPC64, 64): ("ppc64", "powerpc64_linux"),
    (EM_PPC, 32): ("ppc", None),
    (EM_S390, 64): ("s390x", "s390x_linux"),
    (EM_LOONGARCH, 64): ("loongarch64", "loongarch64_linux"),
}

# (class, little endian, e_machine) of every Nix system, in nix-ld's spelling.
SYSTEM_ABIS = {
    "x86_64_linux": (64, True, EM_X86_64),
    "i686_linux": (32, True, EM_386),
    "aarch64_linux": (64, True, EM_AARCH64),
    "armv7l_linux": (32, True, EM_ARM),
    "riscv64_linux": (64, True, EM_RISCV),
    "powerpc64_linux": (64, False, EM_PPC64),
    "powerpc64le_linux": (64, True, EM_PPC64),
    "s390x_linux": (64, False, EM_S390),
    "loongarch64_linux": (64, True, EM_LOONGARCH),
}
_ABI_SYSTEMS = {abi: system for system, abi in SYSTEM_ABIS.items()}

# What each kernel (os.uname().machine) runs without emulation, its own programs first:
# (class, little endian, e_machine).
_HOST_ABIS = {
    "x86_64": ((64, True, EM_X86_64), (32, True, EM_386)),
    "i686": ((32, True, EM_386),),
    "i586": ((32, True, EM_386),),
    "i386": ((32, True, EM_386),),
    "aarch64": ((64, True, EM_AARCH64), (32, True, EM_ARM)),
    "armv8l": ((32, True, EM_ARM),),
    "armv7l": ((32, True, EM_ARM),),
    "armv6l": ((32, True, EM_ARM),),
    "riscv64": ((64, True, EM_RISCV),),
    "ppc64le": ((64, True, EM_PPC64),),
    "ppc64": ((64, False, EM_PPC64), (32, False, EM_PPC)),
    "s390x": ((64, False, EM_S390),),
    "loongarch64": ((64, True, EM_LOONGARCH),),
}

# The kernel refuses more program headers than fit in 64 KiB (fs/binfmt_elf.c).
_MAX_PROGRAM_HEADERS_BYTES = 65536
# The kernel refuses an interpreter path longer than PATH_MAX.
_PATH_MAX = 4096
# Of a dynamic table, as much as holds DT_FLAGS_1 in any real file (256 entries of 64 bits).
_DYNAMIC_READ_LIMIT = 4096
# Files are at most this large (off_t is signed 64-bit).
_LARGEST_FILE_OFFSET = (1 << 63) - 1

_LAYOUTS = {
    # class: (header format after e_ident, header size, program header format, its size)
    64: ("HHIQQQIHHHHHH", 64, "IIQQQQQQ", 56),
    32: ("HHIIIIIHHHHHH", 52, "IIIIIIII", 32),
}


class ElfError(ValueError):
    """The file is not a well-formed ELF program; the message says what is wrong."""


class NotElf(ElfError):
    """The file does not start with the ELF magic; `head` holds its first bytes."""

    def __init__(self, head: bytes) -> None:
        super().__init__("a #! script, not an ELF file" if head.startswith(b"#!") else "not an ELF file")
        self.head = head


class NotRegularFile(ElfError):
    """The path names no regular file (a FIFO, a directory, a device): no program, as the
    kernel refuses such an interpreter at once."""

    def __init__(self) -> None:
        super().__init__("not a regular file")


class Segment(namedtuple("Segment", "offset file_size memory_size flags")):
    """A PT_LOAD program header: the part of the file it maps, its size in memory, its PF_ flags."""

    __slots__ = ()


class ElfHeader(
    namedtuple(
        "ElfHeader",
        "elf_class little_endian machine type entry interpreter dynamic loads",
    )
):
    """What the launch needs to know of an ELF file (class is 32 or 64; interpreter is bytes or
    None; dynamic the (offset, size) of PT_DYNAMIC or None; loads the PT_LOAD segments, in file
    order)."""

    __slots__ = ()

    @property
    def machine_name(self) -> str:
        """A short name for the machine, as `uname -m` would say it (`x86_64`, `i386`, `aarch64`)."""
        known = _MACHINES.get((self.machine, self.elf_class))
        if known is None:
            return f"machine {self.machine} ({self.elf_class}-bit)"
        name = known[0]
        if self.machine == EM_PPC64 and self.little_endian:
            name += "le"
        return name

    @property
    def system(self) -> str | None:
        """The Nix system in nix-ld's spelling (`x86_64_linux`), or None for machines Nix lacks."""
        known = _MACHINES.get((self.machine, self.elf_class))
        if known is None or known[1] is None:
            return None
        if self.machine == EM_PPC64 and self.little_endian:
            return "powerpc64le_linux"
        return known[1]

    @property
    def abi(self) -> tuple[int, bool, int]:
        """(class, little endian, e_machine): two files can share a process only when these agree."""
        return (self.elf_class, self.little_endian, self.machine)


def host_runs(header: ElfHeader, host_machine: str | None = None) -> bool:
    """True when this kernel runs programs of the header's machine natively.

    An unknown host machine is given the benefit of the doubt.
    """
    abis = _HOST_ABIS.get(host_machine or os.uname().machine)
    return abis is None or header.abi in abis


def host_systems(host_machine: str | None = None) -> tuple[str, ...]:
    """The Nix systems whose programs this kernel runs natively, its own first
    (`("x86_64_linux", "i686_linux")`); empty for a machine Nix has no name for."""
    abis = _HOST_ABIS.get(host_machine or os.uname().machine, ())
    return tuple(_ABI_SYSTEMS[abi] for abi in abis if abi in _ABI_SYSTEMS)


def host_machine_name() -> str:
    """The machine this kernel runs, as `uname -m` says it."""
    return os.uname().machine


def shared_object_name(name: bytes) -> bool:
    """True for a file name a shared library may have (libfoo.so, libfoo.so.1, libfoo.so.1.2.3,
    ld-linux-x86-64.so.2): where to look for one. Only its ELF header tells for sure."""
    return name.endswith(b".so") or b".so." in name


def open_regular(path: bytes) -> int:
    """A read-only descriptor of the regular file at `path`. Raises OSError when it cannot be
    opened, NotRegularFile when it is something else."""
    # Without O_NONBLOCK, opening a FIFO waits for a writer, for ever; a regular file reads
    # the same either way.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile()
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_header(path: bytes) -> ElfHeader:
    """Read the ELF and program headers of the file at `path`.

    Raises OSError when the file cannot be read, NotRegularFile when it is not a regular file,
    NotElf when it is not ELF, ElfError when it is truncated or corrupt.
    """
    fd = open_regular(path)
    try:
        return read_header_from(fd)
    finally:
        os.close(fd)


def read_header_from(fd: int) -> ElfHeader:
    """Like read_header, from an open file descriptor (read with pread: its offset is untouched)."""
    file_size = os.fstat(fd).st_size
    head = os.pread(fd, 64, 0)
    elf_class, little_endian = read_identification(head)
    order = "<" if little_endian else ">"
    header_format, header_size, phdr_format, phdr_size = _LAYOUTS[elf_class]
    if len(head) < header_size:
        raise ElfError("truncated ELF file (it ends inside the ELF header)")
    (e_type, e_machine, _version, e_entry, e_phoff, _shoff, _flags, _ehsize,
     e_phentsize, e_phnum, _shentsize, _shnum, _shstrndx) = struct.unpack_from(
        order + header_format, head, 16)

    if e_phnum and e_phentsize != phdr_size:
        raise ElfError(f"corrupt ELF header (program header size {e_phentsize}, expected {phdr_size})")
    table_size = e_phnum * phdr_size
    if table_size > _MAX_PROGRAM_HEADERS_BYTES:
        raise ElfError(f"corrupt ELF header ({e_phnum} program headers)")
    table = _read_at(fd, table_size, e_phoff)
    if len(table) < table_size:
        raise ElfError("truncated ELF file (it ends inside the program headers)")

    interpreter = None
    dynamic = None
    loads = []
    phdr = struct.Struct(order + phdr_format)
    for fields in phdr.iter_unpack(table):
        p_type = fields[0]
        if elf_class == 64:
            p_flags, p_offset, p_filesz, p_memsz = fields[1], fields[2], fields[5], fields[6]
        else:
            p_offset, p_filesz, p_memsz, p_flags = fields[1], fields[4], fields[5], fields[6]
        if p_type == PT_LOAD:
            loads.append(Segment(p_offset, p_filesz, p_memsz, p_flags))
        elif p_type == PT_DYNAMIC and dynamic is None:
            dynamic = (p_offset, p_filesz)
        elif p_type == PT_INTERP and interpreter is None:
            interpreter = read_interpreter(fd, p_offset, p_filesz)
    check_loads(e_type, loads, file_size)
    return ElfHeader(elf_class, little_endian, e_machine, e_type, e_entry, interpreter, dynamic,
                     tuple(loads))


def read_identification(head: bytes) -> tuple[int, bool]:
    """(class, little endian) from the first bytes of a file (its 16-byte e_ident); raises
    NotElf when it is no ELF file, ElfError when the identification is truncated or corrupt."""
    if head[:4] != ELF_MAGIC:
        raise NotElf(head)
    if len(head) < 16:
        raise ElfError("truncated ELF file (it ends inside the ELF identification)")
    elf_class = {1: 32, 2: 64}.get(head[4])
    if elf_class is None:
        raise ElfError(f"corrupt ELF header (unknown class {head[4]})")
    if head[5] not in (1, 2):
        raise ElfError(f"corrupt ELF header (unknown byte order {head[5]})")
    return elf_class, head[5] == 1


def type_and_machine(head: bytes) -> tuple[int, int, bool, int]:
    """(e_type, class, little endian, e_machine) from a file's first 20 bytes: what tells a
    shared object of one machine from another, without reading its program headers. Raises as
    read_identification does, and ElfError when the 20 bytes are not all there."""
    elf_class, little_endian = read_identification(head)
    if len(head) < 20:
        raise ElfError("truncated ELF file (it ends inside the ELF header)")
    e_type, e_machine = struct.unpack_from("<HH" if little_endian else ">HH", head, 16)
    return e_type, elf_class, little_endian, e_machine


def dynamic_entries(fd: int, header: ElfHeader, limit: int | None = None):
    """The (tag, value) pairs of the file's dynamic table, up to DT_NULL, from at most its first
    `limit` bytes."""
    if header.dynamic is None:
        return
    offset, size = header.dynamic
    entry = struct.Struct(("<" if header.little_endian else ">") + ("qQ" if header.elf_class == 64 else "iI"))
    table = _read_at(fd, min(size, limit if limit is not None else size) // entry.size * entry.size, offset)
    for tag, value in entry.iter_unpack(table):
        if tag == DT_NULL:
            return
        yield tag, value


def dynamic_flags_1(fd: int, header: ElfHeader) -> int:
    """The DT_FLAGS_1 value of the file's dynamic table (0 when it has none), from its first
    _DYNAMIC_READ_LIMIT bytes: what tells a static-pie program (DF_1_PIE) from a loader."""
    for tag, value in dynamic_entries(fd, header, _DYNAMIC_READ_LIMIT):
        if tag == DT_FLAGS_1:
            return value
    return 0


def _read_at(fd: int, size: int, offset: int) -> bytes:
    """os.pread, where a range no file can hold (a corrupt header's 64-bit offset, which pread
    refuses or cannot even be given) reads as the end of the file: the caller's check for a
    short read then reports the truncation."""
    if offset > _LARGEST_FILE_OFFSET - size:
        return b""
    return os.pread(fd, size, offset)


def check_loads(e_type: int, loads, file_size: int) -> None:
    """Raise ElfError when a program or shared object cannot be mapped: with no PT_LOAD the
    kernel maps nothing and jumps into the void (SIGSEGV); a segment that ends past the end of
    the file, or holds more file than memory, dies by SIGBUS or is refused by the loader.
    Other types are left to the callers, who refuse them by name."""
    if e_type not in (ET_EXEC, ET_DYN):
        return
    if not loads:
        raise ElfError("corrupt ELF file (no loadable segment)")
    for segment in loads:
        if segment.file_size > segment.memory_size:
            raise ElfError("corrupt ELF program header (a loadable segment has more bytes in the "
                           "file than in memory)")
        if segment.offset + segment.file_size > file_size:
            raise ElfError("truncated ELF file (a loadable segment ends past the end of the file)")


def constant_data(loads) -> list[tuple[int, int]]:
    """(offset, size) of the parts of the file where the linker puts read-only data, string
    constants included: the loaded segments that are neither writable nor executable
    (`-z separate-code`, lld, Go), or, when there is none, the executable ones that hold
    read-only data together with the code (`-z noseparate-code`)."""
    read_only = [s for s in loads if not s.flags & PF_W]
    data = [s for s in read_only if not s.flags & PF_X] or read_only
    return [(s.offset, s.file_size) for s in data if s.file_size]


def read_interpreter(fd: int, offset: int, size: int) -> bytes:
    """The PT_INTERP path at (offset, size) of the file, within the bounds the kernel enforces
    before it trusts one; raises ElfError."""
    if size < 2 or size > _PATH_MAX:
        raise ElfError(f"corrupt ELF program header (interpreter path of {size} bytes)")
    data = _read_at(fd, size, offset)
    if len(data) < size:
        raise ElfError("truncated ELF file (it ends inside the interpreter path)")
    if data[-1] != 0:
        raise ElfError("corrupt ELF program header (interpreter path is not NUL-terminated)")
    return data[: data.index(b"\0")]
