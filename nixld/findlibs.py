"""`nixld find-libs`: which directories hold the libraries a program is missing.

The loader finds a library by the file name its DT_NEEDED entry gives, in directories, and
skips files of another class or machine; so the index maps file names to the directories that
hold an ELF shared object of that name, with its class and machine (64 bytes read per file).
An index per search root is cached under $XDG_CACHE_HOME/nixld/ with each directory's mtime:
a later run re-reads only directories that changed (a library added, removed or replaced by
rename changes its directory's mtime; one rewritten in place does not: --refresh).

The answer is reached with nixld's own resolver (nixld inspect): directories are added to the
NIX_LD library path, those that provide the most of what is still missing first (the program's
own tree before anything else), until nothing is missing or nothing more can be found; each
round's inspection also brings in what a newly found library needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections import namedtuple

from nixld import config, elf
from nixld.errors import NixLdError, display

INDEX_VERSION = 3
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
Choice = namedtuple("Choice", "directory provides origin")
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


class _Progress:
    """A one-line counter on stderr while indexing, when stderr is a terminal."""

    def __init__(self, root: bytes) -> None:
        self.root = display(root)
        self.shown = 0.0
        self.active = sys.stderr is not None and sys.stderr.isatty()

    def update(self, files: int) -> None:
        now = time.monotonic()
        if self.active and now - self.shown > 0.1:
            self.shown = now
            sys.stderr.write(f"\rnixld: indexing {self.root}: {files} files read")
            sys.stderr.flush()

    def done(self) -> None:
        if self.active and self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


class RootIndex:
    """The shared objects under one root: per directory, its mtime, subdirectories and the
    {file name: (class, machine)} of the shared objects it holds."""

    def __init__(self, root: bytes, directories: dict | None = None, depth: int = ROOT_DEPTH,
                 hidden: bool = True) -> None:
        self.root = root
        self.depth = depth
        self.hidden = hidden
        self.directories: dict[bytes, dict] = directories or {}
        self.files_read = 0
        self.directories_read = 0

    def candidates(self):
        """(file name, Candidate) for every shared object indexed."""
        for directory, entry in self.directories.items():
            for name, (elf_class, machine) in entry["libraries"].items():
                yield name, Candidate(directory, elf_class, machine)

    def refresh(self, progress: _Progress | None = None) -> None:
        """Bring the index up to date with the disk: read again only directories whose mtime
        changed, or that are new."""
        previous, self.directories = self.directories, {}
        for directory in self._top_directories():
            self._walk(directory, previous, progress, depth=0)

    def _top_directories(self):
        if self.root == STORE:
            try:
                packages = sorted(entry.name for entry in os.scandir(STORE) if entry.is_dir(follow_symlinks=False))
            except OSError:
                return []
            return [os.path.join(STORE, package, sub) for package in packages for sub in STORE_LIBRARY_DIRS]
        return [self.root]

    def _walk(self, directory: bytes, previous: dict, progress: _Progress | None, depth: int) -> None:
        try:
            mtime = os.stat(directory).st_mtime_ns
        except OSError:
            return
        cached = previous.get(directory)
        if cached is None or cached["mtime"] != mtime:
            cached = self._read_directory(directory, mtime, progress)
        self.directories[directory] = cached
        recursive = self.root != STORE
        if recursive and depth < self.depth:
            for sub in cached["subdirectories"]:
                if self.hidden or not sub.startswith(b"."):
                    self._walk(os.path.join(directory, sub), previous, progress, depth + 1)

    def _read_directory(self, directory: bytes, mtime: int, progress: _Progress | None) -> dict:
        self.directories_read += 1
        subdirectories, libraries = [], {}
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return {"mtime": mtime, "subdirectories": [], "libraries": {}, "unreadable": True}
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    subdirectories.append(entry.name)
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
        return {"mtime": mtime, "subdirectories": sorted(subdirectories), "libraries": libraries}

    # The cache: JSON, with bytes as surrogate-escaped text; names joined with NULs, which no
    # file name holds, so that a directory is decoded in a few calls (a warm run is mostly this).

    def to_json(self) -> dict:
        text = os.fsdecode
        return {"version": INDEX_VERSION, "root": text(self.root), "directories": [
            [text(directory), entry["mtime"], text(b"\0".join(entry["subdirectories"])),
             text(b"\0".join(entry["libraries"])), [n for facts in entry["libraries"].values() for n in facts]]
            for directory, entry in self.directories.items()]}

    @classmethod
    def from_json(cls, root: bytes, document) -> RootIndex | None:
        """The index in `document`, or None when it is not an index of `root` in this format."""
        def names(joined: str) -> list[bytes]:
            return joined.encode("utf-8", "surrogateescape").split(b"\0") if joined else []

        try:
            if document["version"] != INDEX_VERSION or os.fsencode(document["root"]) != root:
                return None
            directories = {}
            for directory, mtime, subdirectories, libraries, facts in document["directories"]:
                files = names(libraries)
                # The facts only ever meet == with a program's (class, machine): a number of
                # the wrong type matches nothing, so the shape is what needs checking here.
                if type(mtime) is not int or type(facts) is not list or len(facts) != 2 * len(files):
                    return None
                directories[os.fsencode(directory)] = {
                    "mtime": mtime, "subdirectories": names(subdirectories),
                    "libraries": dict(zip(files, zip(facts[0::2], facts[1::2])))}
        except (KeyError, TypeError, ValueError, AttributeError, UnicodeError):
            return None
        return cls(root, directories)


def _cache_file(cache_dir: bytes, root: bytes) -> bytes:
    return os.path.join(cache_dir, b"index-" + hashlib.sha256(root).hexdigest()[:24].encode() + b".json")


def load_index(root: bytes, cache_dir: bytes | None, refresh: bool = False) -> tuple[RootIndex, str]:
    """The up-to-date index of `root`, from the cache when there is a usable one; and how it
    was had: "cached", "refreshed" (a cache was brought up to date), "built" or "rebuilt" (the
    cache file was corrupt or not an index of this root: never trusted)."""
    how, index = "built", None
    path = None if cache_dir is None else _cache_file(cache_dir, root)
    if path is not None and not refresh:
        try:
            with open(path, "rb") as stream:
                index = RootIndex.from_json(root, json.loads(stream.read()))
            how = "cached" if index is not None else "rebuilt"
        except FileNotFoundError:
            pass
        except (OSError, ValueError):
            how = "rebuilt"
    index = index or RootIndex(root)
    progress = _Progress(root)
    index.refresh(progress)
    progress.done()
    if how == "cached" and index.directories_read:
        how = "refreshed"
    if path is not None and (how != "cached"):
        _write_cache(path, index)
    return index, how


def _write_cache(path: bytes, index: RootIndex) -> None:
    """Write the cache file whole (temporary file, then rename); a cache that cannot be written
    costs only time, so failures are ignored."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=b".index-")
        with os.fdopen(fd, "w") as stream:
            json.dump(index.to_json(), stream)
        os.replace(temporary, path)
    except OSError:
        pass


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
              cache_dir: bytes | None = None, refresh: bool = False, inspector=None) -> Answer:
    """Find directories for what `program` is missing under the NIX_LD settings of `env`."""
    from nixld.resolve import Inspector

    inspector = inspector or Inspector()
    first = inspector.inspect(program, env=env)
    if first.system is None and not first.needed:
        raise FindLibsError(f"{display(program)} needs no shared libraries")
    nix_dirs, source = config.nix_ld_library_dirs(env, first.system)
    variable = b"NIX_LD_LIBRARY_PATH" if source == "default" else source.encode()
    current = [directory for directory in nix_dirs if source != "default" or os.path.isdir(directory)]

    all_roots = []
    if use_default_roots:
        all_roots += ([STORE] if os.path.isdir(STORE) else []) + [d for d in nix_dirs if os.path.isdir(d)]
    for root in roots:
        if not os.path.isdir(root):
            raise FindLibsError(f"search root {display(root)} is not a directory")
        all_roots.append(os.path.abspath(root))
    all_roots = list(dict.fromkeys(all_roots))

    tree = vendor_tree(program)
    stats = {}
    by_name: dict[bytes, list[tuple[Candidate, str]]] = {}
    indexes = ([(_vendor_index(tree), "vendor")] if tree else [])
    for root in all_roots:
        index, how = load_index(root, cache_dir, refresh)
        stats[os.fsdecode(root)] = {"how": how, "directories": len(index.directories),
                                    "directories_read": index.directories_read, "files_read": index.files_read}
        indexes.append((index, "root"))
    header = elf.read_header(first.path)
    fits = (header.elf_class, header.machine)
    for index, origin in indexes:
        for name, candidate in index.candidates():
            if (candidate.elf_class, candidate.machine) == fits:
                by_name.setdefault(name, []).append((candidate, origin))

    missing_before = first.missing
    chosen: list[Choice] = []
    inspection = first
    while inspection.missing:
        missing = set(inspection.missing)
        scores: dict[bytes, tuple] = {}
        for name in missing:
            for candidate, origin in by_name.get(name, ()):
                if any(choice.directory == candidate.directory for choice in chosen):
                    continue
                provides, _, _ = scores.get(candidate.directory, (set(), origin, 0))
                provides = provides | {name}
                scores[candidate.directory] = (provides, origin, len(provides))
        if not scores:
            break
        # The program's own tree first, then what provides most; then the shorter path.
        directory = min(scores, key=lambda d: (scores[d][1] != "vendor", -scores[d][2], len(d), d))
        provides, origin, _ = scores[directory]
        chosen.append(Choice(directory, tuple(sorted(provides)), origin))
        trial = dict(env)
        trial[variable] = b":".join([*current, *(choice.directory for choice in chosen)])
        inspection = inspector.inspect(program, env=trial)

    candidates = {name: [candidate.directory for candidate, _ in by_name.get(name, ())]
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
                    "origin": choice.origin} for choice in answer.chosen],
        "candidates": {text(name): [{"directory": text(d), "chosen": d in chosen} for d in dirs]
                       for name, dirs in answer.candidates.items()},
        "unresolved": [text(name) for name in answer.unresolved],
        "roots": [text(root) for root in answer.roots],
        "vendor_tree": None if answer.vendor_tree is None else text(answer.vendor_tree),
        "index": answer.index_stats,
    }


def report(answer: Answer) -> str:
    """The answer for a reader: the value to use, then what was chosen and why, then what is
    still missing."""
    text = os.fsdecode
    lines = []
    if not answer.missing_before:
        lines.append(f"{text(answer.program)}: nothing is missing with the current settings")
    for choice in answer.chosen:
        where = "the program's own tree" if choice.origin == "vendor" else "a search root"
        lines.append(f"{text(choice.directory)}: provides {', '.join(map(text, choice.provides))} ({where})")
    choices = {choice.directory: choice for choice in answer.chosen}
    for name, dirs in answer.candidates.items():
        if len(set(dirs)) > 1:
            picked = next((choices[d] for d in dirs if d in choices), None)
            others = ", ".join(text(d) for d in dict.fromkeys(dirs) if picked is None or d != picked.directory)
            if picked is None:
                reason = "none chosen"
            elif picked.origin == "vendor":
                reason = f"chosen: {text(picked.directory)}, in the program's own tree"
            elif len(picked.provides) > 1:
                reason = f"chosen: {text(picked.directory)}, which provides {len(picked.provides)} of the missing"
            else:
                reason = f"chosen: {text(picked.directory)}, the shortest path of those providing as much"
            lines.append(f"{text(name)}: {len(set(dirs))} candidates; {reason}; also in {others}")
    for name in answer.unresolved:
        lines.append(f"{text(name)}: not found under {', '.join(map(text, answer.roots)) or 'any root'}"
                     + (f" nor in {text(answer.vendor_tree)}" if answer.vendor_tree else ""))
    lines.append(f"{text(answer.variable)}={text(b':'.join(answer.directories))}")
    return "\n".join(lines) + "\n"
