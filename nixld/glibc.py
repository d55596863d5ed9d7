"""What glibc's loader searches besides the paths it is given: its ld.so.cache, its system
directories and the hardware-capability subdirectories of every directory.

All of it is learned from the loader itself: `LOADER --help` (glibc >= 2.33) lists the cache,
the system search path and the subdirectories it searches. Running the configured loader with
`--help` runs nothing of the program being inspected.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from nixld import elf

_CACHE_MAGIC = b"glibc-ld.so.cache1.1"
_CACHE_HEADER = struct.Struct("<20sIIB3xI12x")  # magic+version, nlibs, len_strings, flags, extension offset
_CACHE_ENTRY = struct.Struct("<iIIIQ")  # flags, key, value, osversion, hwcap
_EXTENSION_MAGIC = 0xEAA42174
_EXTENSION_GLIBC_HWCAPS = 1
_HWCAP_EXTENSION = 1 << 62

# ldconfig's flags for each (class, e_machine): FLAG_ELF_LIBC6 plus the architecture's bits.
_CACHE_FLAGS = {
    (64, elf.EM_X86_64): 0x0303,
    (32, elf.EM_X86_64): 0x0803,
    (32, elf.EM_386): 0x0003,
    (64, elf.EM_AARCH64): 0x0A03,
    (64, elf.EM_PPC64): 0x0503,
    (64, elf.EM_S390): 0x0403,
    (64, elf.EM_RISCV): 0x1003,
}


@dataclass(frozen=True)
class LoaderFacts:
    """The loader's own search: where its cache is, its system directories, the
    subdirectories it tries in every directory (best first, ending with the directory itself),
    and what $LIB and $PLATFORM expand to. `source` says how these were learned."""

    cache: bytes | None
    system_dirs: tuple[bytes, ...]
    subdirs: tuple[bytes, ...]
    hwcaps: tuple[bytes, ...]
    lib: bytes
    platform: bytes | None
    source: str
    warnings: tuple[str, ...] = field(default=())


def facts_from_help(text: bytes) -> LoaderFacts | None:
    """Parse `ld.so --help` (glibc >= 2.33); None when it lacks the search path section."""
    lines = text.splitlines()
    try:
        start = lines.index(b"Shared library search path:")
    except ValueError:
        return None
    cache = None
    system_dirs: list[bytes] = []
    hwcaps: list[bytes] = []
    legacy: list[bytes] = []
    platform = None
    section = "search"
    for line in lines[start + 1:]:
        stripped = line.strip()
        if not stripped:
            continue
        if line.startswith(b"Subdirectories of glibc-hwcaps"):
            section = "hwcaps"
        elif line.startswith(b"Legacy HWCAP subdirectories"):
            section = "legacy"
        elif not line.startswith(b" "):
            section = "other"
        elif section == "search":
            if stripped.startswith(b"(libraries located via ") and stripped.endswith(b")"):
                cache = stripped[len(b"(libraries located via "):-1]
            elif stripped.endswith(b" (system search path)"):
                system_dirs.append(stripped[: -len(b" (system search path)")])
        elif section in ("hwcaps", "legacy"):
            name, _, notes = stripped.partition(b" ")
            if b"searched" not in notes:
                continue
            if section == "hwcaps":
                hwcaps.append(name)
            elif b"AT_PLATFORM" in notes:
                platform = name
            else:
                legacy.append(name)
    subdirs = [b"glibc-hwcaps/" + name + b"/" for name in hwcaps]
    subdirs += _legacy_subdirs(legacy, platform)
    return LoaderFacts(
        cache=cache,
        system_dirs=tuple(system_dirs),
        subdirs=tuple(subdirs) + (b"",),
        hwcaps=tuple(hwcaps),
        lib=_lib_expansion(system_dirs),
        platform=platform,
        source="--help",
    )


def assumed_facts(elf_class: int) -> LoaderFacts:
    """glibc's built-in defaults, for a loader that cannot be asked (too old, or another
    machine's): the usual cache and the multilib-less system directories."""
    lib = b"lib64" if elf_class == 64 else b"lib"
    return LoaderFacts(
        cache=b"/etc/ld.so.cache",
        system_dirs=(b"/" + lib, b"/usr/" + lib),
        subdirs=(b"",),
        hwcaps=(),
        lib=lib,
        platform=None,
        source="assumed",
    )


def _legacy_subdirs(names: list[bytes], platform: bytes | None) -> list[bytes]:
    """Every combination of the legacy capability names, as glibc 2.36 tries them: `tls`,
    then the platform, then the other names, in decreasing subsets (tls/P/H, tls/P, tls/H,
    tls, P/H, P, H), without the empty one, which is the directory itself."""
    parts = [name for name in names if name == b"tls"]
    parts += [platform] if platform else []
    parts += [name for name in names if name != b"tls"]
    combinations = []
    for mask in range((1 << len(parts)) - 1, 0, -1):
        chosen = [part for index, part in enumerate(parts) if mask & (1 << (len(parts) - 1 - index))]
        combinations.append(b"/".join(chosen) + b"/")
    return combinations


def _lib_expansion(system_dirs: list[bytes]) -> bytes:
    """$LIB: the first system directory from its `lib` component on (`/lib/x86_64-linux-gnu`
    gives `lib/x86_64-linux-gnu`, `/lib64` gives `lib64`, a Nix store glibc's `.../lib`
    gives `lib`), which is how glibc's build derives both from the same slibdir."""
    if not system_dirs:
        return b"lib"
    parts = system_dirs[0].strip(b"/").split(b"/")
    for index in range(len(parts) - 1, -1, -1):
        if parts[index].startswith(b"lib"):
            if index + 1 < len(parts) and parts[index] == b"lib":
                return b"/".join(parts[index:])
            return parts[index]
    return b"lib"


class LdCache:
    """A parsed ld.so.cache (the format glibc writes since 2.32): soname to candidates.
    `damage` says what is wrong with a cache that is still usable in part, as glibc uses it."""

    def __init__(self, entries: dict[bytes, list[tuple[int, bytes | None, bytes]]],
                 damage: str | None = None) -> None:
        self._entries = entries
        self.damage = damage

    @classmethod
    def read(cls, path: bytes) -> LdCache:
        """Parse the cache at `path`; raises OSError, or ValueError for another format, a
        truncated or corrupt file (which glibc ignores, as its callers should) or no regular file."""
        with os.fdopen(elf.open_regular(path), "rb") as stream:
            return cls._from_bytes(stream.read())

    @classmethod
    def _from_bytes(cls, data: bytes) -> LdCache:
        if not data.startswith(_CACHE_MAGIC):
            raise ValueError("not a glibc-ld.so.cache1.1 file")
        try:
            return cls._parse(data)
        except struct.error:
            raise ValueError("truncated or corrupt (a part of it lies outside the file)") from None

    @classmethod
    def _parse(cls, data: bytes) -> LdCache:
        _magic, count, strings_size, _flags, extension = _CACHE_HEADER.unpack_from(data, 0)
        # As glibc: a cache whose table of entries does not fit is not used at all; within
        # one that does, an entry whose name or path starts outside the file is skipped.
        entries_end = _CACHE_HEADER.size + count * _CACHE_ENTRY.size
        if entries_end > len(data):
            raise ValueError(f"truncated (it ends inside its table of {count} entries)")
        damage = None
        if entries_end + strings_size > len(data):
            damage = ("truncated (it ends inside its string table); the entries that point past "
                      "its end are ignored, as glibc ignores them")
        hwcap_names = _hwcap_names(data, extension)
        entries: dict[bytes, list[tuple[int, bytes | None, bytes]]] = {}
        offset = _CACHE_HEADER.size
        for _ in range(count):
            flags, key, value, _osversion, hwcap = _CACHE_ENTRY.unpack_from(data, offset)
            offset += _CACHE_ENTRY.size
            if key >= len(data) or value >= len(data):
                continue
            if hwcap & _HWCAP_EXTENSION:
                index = hwcap & 0xFFFFFFFF
                subdir = hwcap_names[index] if index < len(hwcap_names) else b"?"
            elif hwcap:
                continue  # legacy hwcap bits: not used by caches glibc writes since 2.33
            else:
                subdir = None
            entries.setdefault(_string(data, key), []).append((flags, subdir, _string(data, value)))
        return cls(entries, damage)

    def lookup(self, soname: bytes, elf_class: int, machine: int, hwcaps: tuple[bytes, ...]) -> bytes | None:
        """The cache's path for `soname` for this machine: an entry under the best
        supported glibc-hwcaps subdirectory, else the plain one."""
        wanted = _CACHE_FLAGS.get((elf_class, machine))
        best, best_rank = None, len(hwcaps) + 1
        for flags, subdir, path in self._entries.get(soname, ()):
            if wanted is not None and flags != wanted:
                continue
            if subdir is None:
                rank = len(hwcaps)
            elif subdir in hwcaps:
                rank = hwcaps.index(subdir)
            else:
                continue
            if rank < best_rank:
                best, best_rank = path, rank
        return best


def _hwcap_names(data: bytes, offset: int) -> list[bytes]:
    if not offset or offset + 8 > len(data):
        return []
    magic, count = struct.unpack_from("<II", data, offset)
    if magic != _EXTENSION_MAGIC:
        return []
    for index in range(count):
        tag, _flags, section_offset, size = struct.unpack_from("<IIII", data, offset + 8 + 16 * index)
        if tag == _EXTENSION_GLIBC_HWCAPS:
            indexes = struct.unpack_from(f"<{size // 4}I", data, section_offset)
            return [_string(data, string_offset) for string_offset in indexes]
    return []


def _string(data: bytes, offset: int) -> bytes:
    end = data.find(b"\0", offset)
    return data[offset:end if end != -1 else len(data)]
