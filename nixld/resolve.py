"""`nixld inspect`: what a program needs and where each library resolves, as glibc's loader
resolves it in the launch `nixld run` makes, without running the program.

The search follows glibc's _dl_map_object, per needed name: the DT_RPATH of the requesting
object and of the objects that loaded it (only when the requester has no DT_RUNPATH), then
the executable's DT_RPATH; the library path nixld hands the loader (LD_LIBRARY_PATH, -L, the
NIX_LD directories); the requester's own DT_RUNPATH; the loader's ld.so.cache; its system
directories. Every directory is tried with its glibc-hwcaps and legacy subdirectories first.
Objects are mapped breadth-first, each once (by name, SONAME or file identity), which is the
order `ld.so --list` prints.
"""

from __future__ import annotations

import os
import re
import stat
from collections import deque
from dataclasses import dataclass, replace

from nixld import config, elf, glibc, loader as launch
from nixld.errors import LaunchError, NotExecutable, display
from nixld.objects import DF_1_NODEFLIB, DF_1_PIE, ElfObject, ObjectCache, ObjectError, mentions

_TOKEN = re.compile(rb"\$(?:\{(ORIGIN|LIB|PLATFORM)\}|(ORIGIN|LIB|PLATFORM)(?![A-Za-z0-9_]))")
_PROC_SELF_EXE = b"/proc/self/exe"


@dataclass(frozen=True)
class Library:
    """One shared object the loader would load: `soname` is the name first asked for,
    `path` None when it is not found, `via` how it was found (rpath, library-path, runpath,
    cache, default, path, loader), `needed_by` the objects asking for it, `needs` the
    indexes in Inspection.libraries of what it needs."""

    soname: bytes
    path: bytes | None
    via: str | None
    needed_by: tuple[bytes, ...]
    needs: tuple[int, ...] = ()


@dataclass(frozen=True)
class LoaderChoice:
    path: bytes
    source: str
    exists: bool
    cache: bytes | None
    system_dirs: tuple[bytes, ...]
    facts_source: str


@dataclass(frozen=True)
class Inspection:
    """A program, its loader and every library the loader would load, in `ld.so --list`
    order; `needs` indexes the libraries the program itself needs; `run_error` and
    `run_status` are the line and the status `nixld run` would refuse the launch with (None:
    it would start it), as loader.launch_loader decides."""

    path: bytes
    elf_class: int
    machine: str
    system: str | None
    type: str
    pie: bool
    entry: int
    interpreter: bytes | None
    interpreter_exists: bool
    static: bool
    needed: tuple[bytes, ...]
    rpath: tuple[bytes, ...]
    runpath: tuple[bytes, ...]
    loader: LoaderChoice
    search_path: tuple[bytes, ...]
    libraries: tuple[Library, ...]
    missing: tuple[bytes, ...]
    warnings: tuple[str, ...]
    needs: tuple[int, ...] = ()
    run_error: str | None = None
    run_status: int | None = None

    @property
    def exit_status(self) -> int:
        """`nixld inspect`'s status for this program: `run_status` when `nixld run` would
        refuse to start it (`run_error` says why), else 1 when a library is missing, else 0."""
        return max(self.run_status or 0, 1 if self.missing else 0)

    def as_json(self) -> dict:
        """The inspection as JSON-ready data (bytes as str, undecodable bytes escaped as
        Python's os.fsdecode does)."""
        text = os.fsdecode
        return {
            "path": text(self.path),
            "class": self.elf_class,
            "machine": self.machine,
            "system": self.system,
            "type": self.type,
            "pie": self.pie,
            "entry": self.entry,
            "interpreter": None if self.interpreter is None else text(self.interpreter),
            "interpreter_exists": self.interpreter_exists,
            "static": self.static,
            "needed": [text(name) for name in self.needed],
            "rpath": [text(entry) for entry in self.rpath],
            "runpath": [text(entry) for entry in self.runpath],
            "loader": {
                "path": text(self.loader.path),
                "source": self.loader.source,
                "exists": self.loader.exists,
                "cache": None if self.loader.cache is None else text(self.loader.cache),
                "system_dirs": [text(directory) for directory in self.loader.system_dirs],
                "facts": self.loader.facts_source,
            },
            "search_path": [text(directory) for directory in self.search_path],
            "libraries": [
                {
                    "soname": text(library.soname),
                    "path": None if library.path is None else text(library.path),
                    "via": library.via,
                    "needed_by": [text(path) for path in library.needed_by],
                    "needs": list(library.needs),
                }
                for library in self.libraries
            ],
            "missing": [text(name) for name in self.missing],
            "warnings": list(self.warnings),
            "run_error": self.run_error,
            "exit_status": self.exit_status,
        }


class Inspector:
    """Inspects programs, sharing one parse of every file and one query of every loader
    across all of them."""

    def __init__(self) -> None:
        self.objects = ObjectCache()
        self._facts: dict[tuple, tuple[glibc.LoaderFacts, glibc.LdCache | None]] = {}

    def inspect(self, path, libs=(), *, env=None, ld=None, nix_ld=True) -> Inspection:
        """Inspect the program at `path` (found on PATH when it has no slash) as `nixld run`
        would launch it with `libs`, `env` (default os.environb) and `ld`; without `nix_ld`,
        as a loader that never reads the NIX_LD directories would (a Nix Python's, loading an
        extension module). Raises ProgramNotFound or NotExecutable when it is not an ELF file
        that can be read."""
        name = os.fsencode(path)
        env = os.environb if env is None else launch.byte_environment(env)
        libs = launch.library_directories(libs)
        override = None if ld is None else os.fsencode(ld)

        program_path = launch.resolve_program(name, env)
        program = self._load_program(program_path)
        header = program.header
        system = header.system
        warnings: list[str] = []

        # Static: no interpreter, and an executable or a static-pie (a PIE without one).
        static = program.interpreter is None and (program.type == elf.ET_EXEC or bool(program.flags_1 & DF_1_PIE))
        # `nixld run`'s verdict on the launch, reported with the rest, not in its place; a
        # shared library (no interpreter, not static) is inspected, not launched.
        run_error = run_status = None
        if program.interpreter is not None or static:
            try:
                launch.launch_loader(env, override, program_path, header)
            except LaunchError as error:
                run_error, run_status = error.message, error.exit_status
                warnings.append(run_error)
        loader_path, loader_source, _ = launch.choose_loader(env, system, override, program_path, header)
        loader_choice, facts, cache, loader_object = self._loader(loader_path, loader_source, system,
                                                                  program_path, program, env, warnings)
        nix_dirs = config.nix_ld_library_dirs(env, system)[0] if nix_ld else ()
        search_path = config.library_search_path(
            config.split_ld_library_path(env.get(b"LD_LIBRARY_PATH")), config.split_library_arguments(libs),
            nix_dirs)

        # Linkers before binutils 2.26 wrote no DF_1_PIE; such a PIE still has an interpreter
        # and, unlike a runnable library (libc.so.6), no SONAME.
        pie = program.type == elf.ET_DYN and (
            bool(program.flags_1 & DF_1_PIE) or (program.interpreter is not None and program.soname is None))
        _program_warnings(program_path, program, static, pie, warnings)

        walk = _Walk(self.objects, facts, cache, search_path, program_path, program,
                     loader_path, loader_object, warnings)
        if not static:
            walk.run()
        missing = tuple(dict.fromkeys(library.soname for library in walk.libraries if library.path is None))
        return Inspection(
            path=program_path,
            elf_class=program.elf_class,
            machine=header.machine_name,
            system=system,
            type={elf.ET_EXEC: "EXEC", elf.ET_DYN: "DYN"}.get(program.type, str(program.type)),
            pie=pie,
            entry=program.entry,
            interpreter=program.interpreter,
            interpreter_exists=program.interpreter is not None and os.path.exists(program.interpreter),
            static=static,
            needed=program.needed,
            rpath=program.rpath,
            runpath=program.runpath or (),
            loader=loader_choice,
            search_path=search_path,
            libraries=tuple(walk.libraries),
            missing=missing,
            warnings=tuple(dict.fromkeys(warnings)),
            needs=tuple(walk.program_needs),
            run_error=run_error,
            run_status=run_status,
        )

    def _load_program(self, path: bytes) -> ElfObject:
        shown = display(path)
        launch.file_mode(path, shown)
        try:
            program = self.objects.load(path)
        except OSError as error:
            raise NotExecutable(f"{shown}: {error.strerror}") from error
        except ObjectError as error:
            raise NotExecutable(f"{shown}: {error}") from None
        if program.type not in (elf.ET_EXEC, elf.ET_DYN):
            kind = elf.TYPE_NAMES.get(program.type, f"an ELF file of type {program.type}")
            raise NotExecutable(f"{shown}: is {kind}, not a program or a shared library")
        return program

    def _loader(self, path, source, system, program_path, program, env, warnings):
        """The loader's choice, its search facts and cache, and its parsed object (or None)."""
        # A FIFO or a directory exists, and check_loader says what is wrong with it.
        exists = os.path.exists(path)
        loader_object = None
        usable = False
        try:
            launch.check_loader(path, source, system, program_path, program.header)
            usable = True
            loader_object = self.objects.load(path)
        except LaunchError as error:
            warnings.append(error.message)
        except (OSError, ObjectError) as error:
            warnings.append(f"loader {display(path)}: {error}")
        runnable = usable and elf.host_runs(program.header)
        facts, cache = self._loader_facts(path, program.elf_class, runnable, env)
        warnings.extend(facts.warnings)
        choice = LoaderChoice(path=path, source=source, exists=exists, cache=facts.cache,
                              system_dirs=facts.system_dirs, facts_source=facts.source)
        return choice, facts, cache, loader_object

    def _loader_facts(self, path, elf_class, runnable, env):
        key = (path, elf_class, runnable, env.get(b"GLIBC_TUNABLES"))
        if key in self._facts:
            return self._facts[key]
        facts = None
        why = "it is not a loader this machine can run" if not runnable else None
        if not os.path.exists(path):
            why = "it does not exist"
        elif runnable:
            facts, why = _ask_loader(path, env)
        if facts is None:
            assumed = glibc.assumed_facts(elf_class)
            facts = replace(assumed, warnings=(
                f"could not ask the loader {display(path)} for its search path ({why}); "
                f"assuming glibc's defaults: cache {display(assumed.cache)}, directories "
                f"{display(b':'.join(assumed.system_dirs))}",))
        cache = None
        if facts.cache is not None:
            try:
                cache = glibc.LdCache.read(facts.cache)
            except FileNotFoundError:
                cache = None  # a loader built without a cache, as on NixOS
            except (OSError, ValueError) as error:
                facts = replace(facts, warnings=facts.warnings + (
                    f"cannot read the loader's cache {display(facts.cache)}: {error}; going on "
                    "without it, as the loader does",))
            else:
                if cache.damage:
                    facts = replace(facts, warnings=facts.warnings + (
                        f"the loader's cache {display(facts.cache)} is {cache.damage}",))
        self._facts[key] = (facts, cache)
        return facts, cache


def _ask_loader(path: bytes, env) -> tuple[glibc.LoaderFacts | None, str | None]:
    import subprocess  # start-up time: only inspect asks a loader anything

    try:
        result = subprocess.run([path, b"--help"], capture_output=True, timeout=10,
                                env=dict(env), stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as error:
        return None, f"running it with --help failed: {error}"
    facts = glibc.facts_from_help(result.stdout)
    if facts is None:
        return None, "its --help lists no search path: glibc before 2.33, or not glibc"
    return facts, None


def _program_warnings(path: bytes, program: ElfObject, static: bool, pie: bool, warnings: list[str]) -> None:
    shown = display(path)
    if program.mode & (stat.S_ISUID | stat.S_ISGID):
        warnings.append(f"{shown} is set-user-ID or set-group-ID: started through a loader it "
                        "runs without those privileges")
    if static:
        kind = "static-pie" if program.type == elf.ET_DYN else "statically linked"
        warnings.append(f"{shown} is {kind}: it needs no loader, and `nixld run` runs it directly")
    elif program.interpreter is None:
        warnings.append(f"{shown} has no interpreter: a shared library, not a program `nixld run` can start")
    try:
        if mentions(path, _PROC_SELF_EXE, elf.constant_data(program.loads)):
            warnings.append(f"{shown} mentions /proc/self/exe: if it re-executes itself through "
                            "it, that starts the loader, not the program (see the README's limits)")
    except (OSError, ValueError):
        pass


class _Link:
    """One object in the would-be link map."""

    __slots__ = ("names", "path", "object", "origin", "loaded_by", "identity", "index")

    def __init__(self, names, path, obj, loaded_by, index, identity=None):
        self.names = set(names)
        self.path = path
        self.object = obj
        self.origin = _origin(path)
        self.loaded_by = loaded_by
        self.identity = identity  # (device, inode) of a file that was found; None otherwise
        self.index = index


class _Walk:
    """The breadth-first mapping of one program's dependencies."""

    def __init__(self, objects, facts, cache, search_path, program_path, program, loader_path,
                 loader_object, warnings):
        self.objects = objects
        self.facts = facts
        self.cache = cache
        self.search_path = search_path
        self.abi = program.abi
        self.warnings = warnings
        self.main = _Link([program_path] + ([program.soname] if program.soname else []),
                          program_path, program, None, None, _identity(program_path))
        # The loader is mapped before anything else; in explicit-loader mode it also answers
        # to the program's interpreter path. Without its file, its SONAME is guessed.
        loader_names = [loader_path] + ([program.interpreter] if program.interpreter else [])
        if loader_object is not None and loader_object.soname:
            loader_names.append(loader_object.soname)
        elif loader_object is None:
            loader_names.append(os.path.basename(loader_path))
        self.rtld = _Link(loader_names, loader_path, loader_object, None, None, _identity(loader_path))
        self.links = [self.main, self.rtld]
        self.libraries: list[Library] = []
        self.needed_by: dict[int, list[bytes]] = {}
        self.needs: dict[int, list[int]] = {}
        self.program_needs: list[int] = []
        self.order: list[int] = []  # ld.so --list order of self.libraries' indexes
        self._checked_dirs: set[bytes] = set()
        self._directories: dict[bytes, bool] = {}  # one launch's view, as glibc keeps it

    def run(self) -> None:
        queue = deque([self.main])
        while queue:
            requester = queue.popleft()
            needs = self.program_needs if requester is self.main else self.needs.setdefault(requester.index, [])
            for needed in requester.object.needed:
                link = self._map(needed, requester, queue)
                if link is not None and link.index is not None:
                    needs.append(link.index)
                    requesters = self.needed_by.setdefault(link.index, [])
                    if requester.path not in requesters:
                        requesters.append(requester.path)
        position = {index: place for place, index in enumerate(self.order)}
        self.program_needs = [position[index] for index in self.program_needs]
        self.libraries = [
            Library(self.libraries[index].soname, self.libraries[index].path, self.libraries[index].via,
                    tuple(self.needed_by.get(index, ())),
                    tuple(position[need] for need in self.needs.get(index, ())))
            for index in self.order
        ]

    def _map(self, needed: bytes, requester: _Link, queue: deque) -> _Link | None:
        name = needed
        if b"$" in needed:
            name = _expand(needed, requester.origin, self.facts)
            if name is None:
                self.warnings.append(f"{display(requester.path)} needs {display(needed)}, which "
                                     "cannot be expanded")
                return None
        existing = self._loaded(name)
        if existing is not None:
            return self._reuse(existing, name)
        if b"/" in name:
            found = (name, "path") if self._fits(name) else None
        else:
            found = self._search(name, requester)
        if found is None:
            return self._not_found(name, requester)
        path, via = found
        identity = _identity(path)
        for link in self.links:
            if identity is not None and link.identity == identity:
                link.names.add(name)  # the same file under another name: glibc maps it once
                return self._reuse(link, name)
        try:
            obj = self.objects.load(path)
        except (OSError, ObjectError) as error:
            self.warnings.append(f"{display(path)} (needed by {display(requester.path)}) cannot be "
                                 f"loaded: {error}")
            return self._not_found(name, requester)
        names = [name] + ([obj.soname] if obj.soname else [])
        link = _Link(names, path, obj, requester, self._list(name, path, via), identity)
        self.links.append(link)
        queue.append(link)
        return link

    def _reuse(self, link: _Link, name: bytes) -> _Link:
        if link is self.rtld and link.index is None:
            # glibc moves its own entry to follow the object before it in the search list,
            # which holds only the libraries found: entries not found come after it.
            found_before = [place for place, index in enumerate(self.order) if self.libraries[index].path]
            link.index = self._list(name, link.path, "loader", found_before[-1] + 1 if found_before else 0)
        return link

    def _not_found(self, name: bytes, requester: _Link) -> _Link:
        # glibc's trace mode makes a stand-in for each request that fails and never matches
        # a later request against it, so each failing request is listed.
        return _Link([name], name, None, requester, self._list(name, None, None))

    def _list(self, name: bytes, path: bytes | None, via: str | None, place: int | None = None) -> int:
        self.libraries.append(Library(name, path, via, ()))
        index = len(self.libraries) - 1
        self.order.insert(len(self.order) if place is None else place, index)
        return index

    def _loaded(self, name: bytes) -> _Link | None:
        for link in self.links:
            if name in link.names:
                return link
        return None

    def _search(self, name: bytes, requester: _Link) -> tuple[bytes, str] | None:
        if requester.object.runpath is None:
            # Every DT_NEEDED chain ends at the executable, so its DT_RPATH, which glibc
            # searches last, is always among these.
            link = requester
            while link is not None:
                if link.object is not None and link.object.rpath:
                    found = self._in_dirs(name, self._dirs(link, link.object.rpath, "RPATH"), "rpath")
                    if found:
                        return found
                link = link.loaded_by
        # glibc expands $ORIGIN in the library path with the executable's directory.
        found = self._in_dirs(name, self._dirs(self.main, self.search_path, None), "library-path")
        if found:
            return found
        if requester.object.runpath:
            found = self._in_dirs(name, self._dirs(requester, requester.object.runpath, "RUNPATH"), "runpath")
            if found:
                return found
        if requester.object.flags_1 & DF_1_NODEFLIB:
            return None
        if self.cache is not None:
            path = self.cache.lookup(name, self.abi[0], self.abi[2], self.facts.hwcaps)
            if path is not None and self._fits(path):
                return path, "cache"
        return self._in_dirs(name, [_with_slash(d) for d in self.facts.system_dirs], "default")

    def _dirs(self, link: _Link, entries: tuple[bytes, ...], what: str | None) -> list[bytes]:
        """Search path entries, expanded for `link`, as directory prefixes; an object's RPATH
        or RUNPATH (`what`) entries that do not exist are warned about."""
        dirs = []
        for entry in entries:
            expanded = _expand(entry, link.origin, self.facts) if entry else b""
            if expanded is None:
                continue
            directory = _with_slash(expanded) if expanded else b""
            dirs.append(directory)
            if what and directory and directory not in self._checked_dirs:
                self._checked_dirs.add(directory)
                if not os.path.isdir(directory):
                    self.warnings.append(f"{what} entry {display(entry)} of {display(link.path)}: "
                                         f"{display(directory.rstrip(b'/') or b'/')} does not exist")
        return dirs

    def _in_dirs(self, name: bytes, dirs: list[bytes], via: str) -> tuple[bytes, str] | None:
        for directory in dirs:
            for subdir in self.facts.subdirs:
                # Like glibc, remember which directories do not exist rather than try each name.
                if self._is_directory(directory + subdir):
                    candidate = directory + subdir + name
                    if self._fits(candidate):
                        return candidate, via
        return None

    def _is_directory(self, path: bytes) -> bool:
        known = self._directories.get(path)
        if known is None:
            known = self._directories[path] = os.path.isdir(path or b".")
        return known

    def _fits(self, candidate: bytes) -> bool:
        """True when the loader would take `candidate`: an ELF file of the program's class,
        byte order and machine. Other machines' files are skipped, and said so."""
        abi = self.objects.abi_of(candidate)
        if abi is None:
            return False
        if abi != self.abi:
            self.warnings.append(f"skipped {display(candidate)}: {_abi_name(abi)}, not "
                                 f"{_abi_name(self.abi)}")
            return False
        return True


def _expand(entry: bytes, origin: bytes | None, facts: glibc.LoaderFacts) -> bytes | None:
    """Expand $ORIGIN, $LIB and $PLATFORM (braced or not); None when a token has no value,
    in which case glibc drops the entry."""
    values = {b"ORIGIN": origin, b"LIB": facts.lib, b"PLATFORM": facts.platform}
    missing = False

    def substitute(match: re.Match) -> bytes:
        nonlocal missing
        value = values[match.group(1) or match.group(2)]
        if value is None:
            missing = True
            return b""
        return value

    expanded = _TOKEN.sub(substitute, entry)
    return None if missing else expanded


def _origin(path: bytes) -> bytes:
    """The directory of `path` made absolute but not resolved, as glibc computes l_origin."""
    directory = os.path.dirname(path)
    if not path.startswith(b"/"):
        directory = os.getcwdb() + (b"/" + directory if directory else b"")
    return directory or b"/"


def _with_slash(directory: bytes) -> bytes:
    directory = directory.rstrip(b"/") or (b"/" if directory.startswith(b"/") else b"")
    return directory if directory.endswith(b"/") or not directory else directory + b"/"


def _identity(path: bytes) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_dev, status.st_ino)


def _abi_name(abi: tuple[int, bool, int]) -> str:
    return elf.ElfHeader(abi[0], abi[1], abi[2], 0, 0, None, None, ()).machine_name + f" ({abi[0]}-bit)"


_DEFAULT_INSPECTOR: Inspector | None = None


def default_inspector() -> Inspector:
    """The process-wide Inspector behind nixld.inspect: one parse per file per process."""
    global _DEFAULT_INSPECTOR
    if _DEFAULT_INSPECTOR is None:
        _DEFAULT_INSPECTOR = Inspector()
    return _DEFAULT_INSPECTOR
