"""`nixld find-libs`: which directories hold the libraries a program is missing.

The loader finds a library by the file name its DT_NEEDED entry gives, in directories, and
skips files of another class or machine; so the index maps file names to the directories that
hold an ELF shared object of that name, with its class and machine (20 bytes read per file).
An index per search root is cached under $XDG_CACHE_HOME/nixld/ with each directory's mtime:
a later run re-reads only directories that changed (a library added, removed or replaced by
rename changes its directory's mtime; one rewritten in place does not: --refresh). In the Nix
store, a finished package is read once, since store paths do not change.

The answer is reached with nixld's own resolver (nixld inspect): directories are added to the
NIX_LD library path, root by root in the order the user would expect (the program's own tree,
then the --search roots as given, then /nix/store and the NIX_LD library directories), and
within a root those that provide the most of what is still missing first, then the shorter path,
until nothing is missing or nothing more can be found; each round's inspection also brings in
what a newly found library needs.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import hashlib
import os
import struct
import sys
import tempfile
import zlib
from collections import namedtuple

from nixld import config, elf
from nixld.errors import NixLdError, display

INDEX_VERSION = 4
STORE = b"/nix/store"
# In the store, libraries live in each package's lib/ (or lib64/); the rest is not searched.
STORE_LIBRARY_DIRS = (b"lib", b"lib64")
# How deep a root is walked: the program's own tree (lib/, bin/lib/, lib/qt5/plugins/...)
# shallowly, hidden directories left out, so that a program in a home directory does not bring
# the whole of it; a root given by hand whole (but never through a symlink, nor in circles).
VENDOR_DEPTH = 4
ROOT_DEPTH = 64
# Trees too wide to be a program's own: a program in /usr/bin does not bring /usr.
NOT_A_VENDOR_TREE = {b"/", b"/usr", b"/usr/local", b"/opt", b"/home", b"/nix", STORE, b"/run",
                     b"/run/current-system/sw", b"/tmp"}

Candidate = namedtuple("Candidate", "directory elf_class machine")
Choice = namedtuple("Choice", "directory provides origin root")
Answer = namedtuple("Answer", "program system variable directories chosen candidates unresolved missing_before "
                              "roots vendor_tree index_stats")


class FindLibsError(NixLdError):
    """find-libs cannot do its work: no program libraries to look for, a root that is not a directory."""


def cache_directory(env) -> bytes:
    """Where indexes are cached: $XDG_CACHE_HOME/nixld, else ~/.cache/nixld."""
    base = env.get(b"XDG_CACHE_HOME") or os.path.join(os.fsencode(os.path.expanduser("~")), b".cache")
    return os.path.join(base, b"nixld")


def _elf_facts(path: bytes) -> tuple[int, int] | None:
    """(class, machine) of the ELF shared object or program at `path`, None when it is not one
    the loader could map (not ELF, truncated, unreadable, not ET_DYN)."""
    try:
        with os.fdopen(elf.open_regular(path), "rb") as stream:  # a FIFO named libx.so must not block
            head = stream.read(20)
    except (OSError, elf.NotRegularFile):
        return None
    try:
        e_type, elf_class, _, e_machine = elf.type_and_machine(head)
    except elf.ElfError:
        return None
    return (elf_class, e_machine) if e_type == elf.ET_DYN else None


class RootIndex:
    """The shared objects under one root: every directory read, in the order of the walk, with its
    mtime and subdirectories; and a table of the shared objects they hold, sorted by file name,
    each with its directory, class and machine, so that a name is looked up without a pass over
    the table.

    A root that is a Nix store (`store`) is read as find-libs reads /nix/store: each package's
    lib/ and lib64/, not deeper. A package that Nix has finished (it sets every mtime in a store
    path to 1 s once the path is complete) is read once: store paths do not change, and a path
    added or removed changes the store's own mtime. Elsewhere, every directory's mtime is checked:
    a directory that changed, or is new, is read again."""

    def __init__(self, root: bytes, *, store: bool = False, depth: int = ROOT_DEPTH, hidden: bool = True) -> None:
        self.root = root
        self.store = store
        self.depth = depth
        self.hidden = hidden
        self.files_read = 0
        self.directories_read = 0
        self._set_records({})

    @property
    def directories(self) -> list[bytes]:
        """Every directory read, in the order of the walk."""
        if self._directories is None:
            self._directories = [self._path(relative) for relative in self._relative]
        return self._directories

    def candidates(self):
        """(file name, Candidate) for every shared object indexed, by file name."""
        directories = self.directories
        for name, owner, elf_class, machine in zip(self._names, self._owners, self._classes, self._machines):
            yield name, Candidate(directories[owner], elf_class, machine)

    def providers(self, name: bytes) -> list[Candidate]:
        """The shared objects named `name`, in the order of the walk."""
        start = bisect.bisect_left(self._names, name)
        end = bisect.bisect_right(self._names, name, start)
        return [Candidate(self._path(self._relative[owner]), elf_class, machine) for owner, elf_class, machine
                in zip(self._owners[start:end], self._classes[start:end], self._machines[start:end])]

    def refresh(self, progress = None) -> None:
        """Bring the index up to date with the disk, reading again only what changed."""
        if self._relative and self._unchanged():
            return
        previous, records = self._records(), {}
        if self.store:
            self._walk_store(previous, records, progress)
        else:
            self._walk(b"", 0, previous, records, progress)
        self._set_records(records)

    def _path(self, relative: bytes) -> bytes:
        return os.path.join(self.root, relative) if relative else self.root

    def _unchanged(self) -> bool:
        """Whether every directory that can change has the mtime it had when it was read: the root,
        and, in a store, the packages Nix has not finished and their library directories."""
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            if os.fstat(fd).st_mtime_ns != self._mtimes[0]:
                return False
            relatives, mtimes = self._relative[1:], self._mtimes[1:]
            if self.store and mtimes.count(NIX_MTIME) == len(mtimes):
                return True  # every package finished: nothing in the store but its list can change
            if self.store:
                finished = {relative for relative, mtime in zip(relatives, mtimes)
                            if b"/" not in relative and mtime == NIX_MTIME}
                kept = [(relative, mtime) for relative, mtime in zip(relatives, mtimes)
                        if relative.partition(b"/")[0] not in finished]
                relatives, mtimes = [relative for relative, _ in kept], [mtime for _, mtime in kept]
            stat = os.stat
            # Relative to the root's descriptor, the kernel walks a shorter path: a warm run is
            # mostly these calls, one per directory.
            return [stat(relative, dir_fd=fd, follow_symlinks=False).st_mtime_ns for relative in relatives] == mtimes
        except OSError:  # a directory gone, or one that could not be looked at last time either
            return False
        finally:
            os.close(fd)

    def _walk(self, relative: bytes, depth: int, previous: dict, records: dict, progress) -> None:
        path = self._path(relative)
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            if relative:  # listed, but not to be looked at now: kept with no mtime, so that it is tried again
                records[relative] = (_NO_MTIME, [], {})
            return
        record = previous.get(relative)
        if record is None or record[0] != mtime:
            record = self._read_directory(path, mtime, progress)
        records[relative] = record
        if depth < self.depth:
            for sub in record[1]:
                if self.hidden or not sub.startswith(b"."):
                    self._walk(os.path.join(relative, sub) if relative else sub, depth + 1, previous, records,
                               progress)

    def _walk_store(self, previous: dict, records: dict, progress) -> None:
        try:
            mtime = os.stat(self.root).st_mtime_ns
            self.directories_read += 1
            packages = sorted(entry.name for entry in os.scandir(self.root) if entry.is_dir(follow_symlinks=False))
        except OSError:
            return
        records[b""] = (mtime, packages, {})
        for package in packages:
            before = previous.get(package)
            finished = before is not None and before[0] == NIX_MTIME
            if finished:
                package_mtime = NIX_MTIME
            else:
                try:
                    package_mtime = os.stat(os.path.join(self.root, package)).st_mtime_ns
                except OSError:
                    continue
            libraries = []
            for sub in STORE_LIBRARY_DIRS:
                relative = os.path.join(package, sub)
                if finished:
                    if relative in previous:
                        libraries.append((relative, previous[relative]))
                    continue
                path = os.path.join(self.root, relative)
                try:
                    sub_mtime = os.stat(path).st_mtime_ns
                except OSError:
                    continue
                record = previous.get(relative)
                if record is None or record[0] != sub_mtime:
                    record = self._read_directory(path, sub_mtime, progress, subdirectories=False)
                libraries.append((relative, record))
            records[package] = (package_mtime, [os.path.basename(relative) for relative, _ in libraries], {})
            records.update(libraries)

    def _read_directory(self, directory: bytes, mtime: int, progress,
                        subdirectories: bool = True) -> tuple:
        self.directories_read += 1
        names, libraries = [], {}
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return mtime, [], {}
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if subdirectories:
                        names.append(entry.name)
                    continue
            except OSError:
                continue
            if elf.shared_object_name(entry.name):
                self.files_read += 1
                facts = _elf_facts(entry.path)
                if facts is not None:
                    libraries[entry.name] = facts
                if progress:
                    progress.update(self.files_read)
        return mtime, sorted(names), libraries

    def _records(self) -> dict:
        """{relative path: (mtime, subdirectories, {file name: (class, machine)})}, as a walk uses them."""
        libraries = [{} for _ in self._relative]
        for name, owner, elf_class, machine in zip(self._names, self._owners, self._classes, self._machines):
            libraries[owner][name] = (elf_class, machine)
        return {relative: record for relative, *record in
                zip(self._relative, self._mtimes, self._subdirectories(), libraries)}

    def _set_records(self, records: dict) -> None:
        self._relative = list(records)
        self._mtimes = [record[0] for record in records.values()]
        self._subdirectory_lists = [record[1] for record in records.values()]
        self._packed_subdirectories = None
        rows = sorted((name, owner, *facts) for owner, record in enumerate(records.values())
                      for name, facts in record[2].items())
        self._names = [row[0] for row in rows]
        self._owners = [row[1] for row in rows]
        self._classes = [row[2] for row in rows]
        self._machines = [row[3] for row in rows]
        self._directories = None

    def _subdirectories(self) -> list[list[bytes]]:
        if self._subdirectory_lists is None:
            counts, joined = self._packed_subdirectories
            names, self._subdirectory_lists, start = _split(joined, sum(counts)), [], 0
            for count in counts:
                self._subdirectory_lists.append(names[start:start + count])
                start += count
        return self._subdirectory_lists

    # The cache file: a header, then the sections below, then a CRC-32 of all that comes before.
    # Lists of names are joined with NULs, which no file name holds, and numbers are arrays, so
    # that a warm run decodes the whole index in a few calls.

    def to_bytes(self) -> bytes:
        subdirectories = self._subdirectories()
        sections = [self.root, b"\0".join(self._relative), _pack("q", self._mtimes),
                    _pack("I", [len(names) for names in subdirectories]),
                    b"\0".join(name for names in subdirectories for name in names), b"\0".join(self._names),
                    _pack("I", self._owners), bytes(self._classes), _pack("H", self._machines)]
        body = _HEADER.pack(_MAGIC, INDEX_VERSION, self.store, len(self._relative),
                            sum(map(len, subdirectories)), len(self._names), *map(len, sections)) + b"".join(sections)
        return body + zlib.crc32(body).to_bytes(4, "little")

    @classmethod
    def from_bytes(cls, root: bytes, data: bytes, *, store: bool = False) -> RootIndex | None:
        """The index in `data`, or None when it is not an index of `root`, read as `store` says, in
        this format."""
        if len(data) < _HEADER.size + 4 or zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "little"):
            return None
        magic, version, is_store, directories, subdirectories, libraries, *lengths = _HEADER.unpack_from(data)
        if (magic, version, is_store) != (_MAGIC, INDEX_VERSION, store) or sum(lengths) != len(data) - 4 - _HEADER.size:
            return None
        sections, start = [], _HEADER.size
        for length in lengths:
            sections.append(data[start:start + length])
            start += length
        try:
            (cached_root, relative, mtimes, counts, subdirectory_names, names, owners, classes, machines) = sections
            relative, names = _split(relative, directories), _split(names, libraries)
            # Split only when a walk needs them; counted now, so that a bad file is refused here.
            if (subdirectory_names.count(b"\0") + 1 if subdirectories else len(subdirectory_names)) != subdirectories:
                raise ValueError("subdirectory names")
            mtimes, counts, owners, machines = (_unpack("q", mtimes), _unpack("I", counts), _unpack("I", owners),
                                                _unpack("H", machines))
        except ValueError:
            return None
        if (cached_root != root or len(mtimes) != directories or len(counts) != directories
                or sum(counts) != subdirectories or not len(owners) == len(classes) == len(machines) == libraries
                or (relative and relative[0] != b"") or (owners and max(owners) >= directories)
                or names != sorted(names)):
            return None
        index = cls(root, store=store)
        index._relative, index._mtimes = relative, mtimes
        index._subdirectory_lists, index._packed_subdirectories = None, (counts, subdirectory_names)
        index._names, index._owners, index._classes, index._machines = names, owners, list(classes), machines
        return index


# The mtime Nix gives every file and directory of a finished store path (1 s after the epoch).
NIX_MTIME = 1_000_000_000
_NO_MTIME = -1
_MAGIC = b"nixld-index\0"
# magic, version, store, directories, subdirectory names, libraries, then each section's length.
_HEADER = struct.Struct("<12sIBIII9I")


def _pack(typecode: str, numbers) -> bytes:
    packed = array.array(typecode, numbers)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def _unpack(typecode: str, data: bytes) -> list[int]:
    """The numbers in `data`; raises ValueError when its length does not fit."""
    numbers = array.array(typecode)
    numbers.frombytes(data)
    if sys.byteorder != "little":
        numbers.byteswap()
    return numbers.tolist()


def _split(joined: bytes, count: int) -> list[bytes]:
    """`count` names joined with NULs; raises ValueError when there are not that many."""
    names = joined.split(b"\0") if count else []
    if len(names) != count:
        raise ValueError(f"{len(names)} names, not {count}")
    return names


def _cache_file(cache_dir: bytes, root: bytes) -> bytes:
    return os.path.join(cache_dir, b"index-" + hashlib.sha256(root).hexdigest()[:24].encode() + b".bin")


def load_index(root: bytes, cache_dir: bytes | None, refresh: bool = False, *,
               store: bool = False, progress=None) -> tuple[RootIndex, str]:
    """The up-to-date index of `root` (a Nix store when `store`), from the cache when there is a
    usable one; and how it was had: "cached", "refreshed" (a cache was brought up to date),
    "built" or "rebuilt" (the cache file was corrupt or not an index of this root: never trusted).
    `progress`, when given, makes for `root` what is told how many files were read: an object
    with update(files) and done()."""
    how, index = "built", None
    path = None if cache_dir is None else _cache_file(cache_dir, root)
    if path is not None and not refresh:
        try:
            with open(path, "rb") as stream:
                index = RootIndex.from_bytes(root, stream.read(), store=store)
            how = "cached" if index is not None else "rebuilt"
        except FileNotFoundError:
            pass
        except OSError:
            how = "rebuilt"
    index = index or RootIndex(root, store=store)
    counter = progress(root) if progress is not None else None
    index.refresh(counter)
    if counter is not None:
        counter.done()
    if how == "cached" and index.directories_read:
        how = "refreshed"
    if path is not None and how != "cached":
        _write_cache(path, index)
    return index, how


def _write_cache(path: bytes, index: RootIndex) -> None:
    """Write the cache file whole (temporary file, then rename); a cache that cannot be written
    costs only time, so failures are ignored."""
    temporary = None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=b".index-")
        with os.fdopen(fd, "wb") as stream:
            stream.write(index.to_bytes())
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def vendor_tree(program: bytes) -> bytes | None:
    """The program's own tree, where vendors ship its libraries: its directory, or the parent
    of a bin/, sbin/ or libexec/ directory; None for trees as wide as /usr or /opt."""
    directory = os.path.dirname(os.path.abspath(program))
    if os.path.basename(directory) in (b"bin", b"sbin", b"libexec"):
        directory = os.path.dirname(directory)
    return None if directory in NOT_A_VENDOR_TREE else directory


def _vendor_index(tree: bytes) -> RootIndex:
    """The program's own tree, walked afresh (shallow, and not cached)."""
    index = RootIndex(tree, depth=VENDOR_DEPTH, hidden=False)
    index.refresh()
    return index


def find_libs(program: bytes, roots: list[bytes], env, *, use_default_roots: bool = True,
              cache_dir: bytes | None = None, refresh: bool = False, inspector=None, progress=None) -> Answer:
    """Find directories for what `program` is missing under the NIX_LD settings of `env`;
    `progress` is told how indexing goes, as load_index tells it."""
    from nixld.resolve import Inspector

    inspector = inspector or Inspector()
    first = inspector.inspect(program, env=env)
    if first.system is None and not first.needed:
        raise FindLibsError(f"{display(program)} needs no shared libraries")
    nix_dirs, source = config.nix_ld_library_dirs(env, first.system)
    variable = b"NIX_LD_LIBRARY_PATH" if source == "default" else source.encode()
    current = [directory for directory in nix_dirs if source != "default" or os.path.isdir(directory)]

    # What the user named comes before what is there anyway: the --search roots in the order
    # given, then the default roots.
    all_roots = []
    for root in roots:
        if not os.path.isdir(root):
            raise FindLibsError(f"search root {display(root)} is not a directory")
        all_roots.append(os.path.abspath(root))
    if use_default_roots:
        all_roots += ([STORE] if os.path.isdir(STORE) else []) + [d for d in nix_dirs if os.path.isdir(d)]
    all_roots = list(dict.fromkeys(all_roots))

    tree = vendor_tree(program)
    stats = {}
    indexes = ([(_vendor_index(tree), "vendor")] if tree else [])
    for root in all_roots:
        index, how = load_index(root, cache_dir, refresh, store=root == STORE, progress=progress)
        stats[os.fsdecode(root)] = {"how": how, "directories": len(index.directories),
                                    "directories_read": index.directories_read, "files_read": index.files_read}
        indexes.append((index, "root"))
    header = elf.read_header(first.path)
    fits = (header.elf_class, header.machine)
    found: dict[bytes, dict[bytes, tuple[int, str, bytes]]] = {}

    def providers(name: bytes) -> dict[bytes, tuple[int, str, bytes]]:
        """{directory: (rank of its root, origin, root)} of the fitting candidates for `name`, in
        the order of the roots; a directory under several roots counts under the first."""
        if name not in found:
            found[name] = {}
            for rank, (index, origin) in enumerate(indexes):
                for candidate in index.providers(name):
                    if (candidate.elf_class, candidate.machine) == fits:
                        found[name].setdefault(candidate.directory, (rank, origin, index.root))
        return found[name]

    missing_before = first.missing
    chosen: list[Choice] = []
    inspection = first
    while inspection.missing:
        taken = {choice.directory for choice in chosen}
        scores: dict[bytes, tuple[int, str, bytes, set]] = {}
        for name in inspection.missing:
            for directory, (rank, origin, root) in providers(name).items():
                if directory not in taken:
                    scores.setdefault(directory, (rank, origin, root, set()))[3].add(name)
        if not scores:
            break
        # The root first (the program's own tree, then the --search roots, then the default
        # ones); within it, the directory that provides the most of what is missing, then the
        # shorter path.
        directory = min(scores, key=lambda d: (scores[d][0], -len(scores[d][3]), len(d), d))
        _, origin, root, provides = scores[directory]
        chosen.append(Choice(directory, tuple(sorted(provides)), origin, root))
        trial = dict(env)
        trial[variable] = b":".join([*current, *(choice.directory for choice in chosen)])
        inspection = inspector.inspect(program, env=trial)

    candidates = {name: [(directory, root) for directory, (_, _, root) in providers(name).items()]
                  for name in sorted({n for choice in chosen for n in choice.provides} | set(inspection.missing))}
    directories = tuple(dict.fromkeys([*current, *(choice.directory for choice in chosen)]))
    return Answer(program, first.system, variable, directories, tuple(chosen), candidates, inspection.missing,
                  missing_before, tuple(all_roots), tree, stats)


def as_json(answer: Answer) -> dict:
    """The answer as a JSON document (see the README for each field)."""
    text = os.fsdecode
    chosen = {choice.directory for choice in answer.chosen}
    return {
        "program": text(answer.program),
        "system": answer.system,
        "variable": text(answer.variable),
        "value": text(b":".join(answer.directories)),
        "missing_before": [text(name) for name in answer.missing_before],
        "chosen": [{"directory": text(choice.directory), "provides": [text(n) for n in choice.provides],
                    "origin": choice.origin, "root": text(choice.root)} for choice in answer.chosen],
        "candidates": {text(name): [{"directory": text(d), "root": text(root), "chosen": d in chosen}
                                    for d, root in found]
                       for name, found in answer.candidates.items()},
        "unresolved": [text(name) for name in answer.unresolved],
        "roots": [text(root) for root in answer.roots],
        "vendor_tree": None if answer.vendor_tree is None else text(answer.vendor_tree),
        "index": answer.index_stats,
    }
