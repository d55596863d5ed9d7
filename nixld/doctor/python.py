"""The facts `nixld doctor --python PYTHON` gathers: which of the shared objects in the Python's
site-packages (its extension modules, and the libraries wheels load with ctypes) its own loader
would not load, what they miss, and what nixld's Python hook would find for them.

Both questions are answered by `nixld inspect`'s resolver, as the Python's loader (its
executable's PT_INTERP) searches: first without the NIX_LD directories, as that loader searches
by itself; then, for each library it does not find, the NIX_LD directories as the hook searches
them (the first that holds a file of the Python's machine whose soname is the one asked for),
and what each library found there needs in turn, again the loader's way first.
"""

from __future__ import annotations

import os

from nixld import config, elf, pyhook
from nixld.errors import NotExecutable, display


def python_facts(python: bytes, env) -> dict:
    """The Python's report, as JSON-ready data (see the README's `python` fields). Raises what
    pyhook.describe_python raises for what is not a Python it can ask."""
    from nixld.resolve import default_inspector  # start-up time: pyelftools

    facts = pyhook.describe_python(python, env)
    try:
        header = elf.read_header(facts.executable)
    except (OSError, elf.ElfError) as error:
        raise NotExecutable(f"{display(facts.executable)}: {getattr(error, 'strerror', None) or error}") from None
    system = header.system
    directories, source = config.nix_ld_library_dirs(env, system)
    state = pyhook.hook_state(facts.site_packages, facts.cache_tag, pyhook.hook_sources())
    report = {
        "python": os.fsdecode(facts.python),
        "executable": os.fsdecode(facts.executable),
        "version": ".".join(map(str, facts.version)),
        "system": system,
        "machine": header.machine_name,
        "loader": None if header.interpreter is None else os.fsdecode(header.interpreter),
        "site_packages": [os.fsdecode(directory) for directory in facts.library_dirs],
        "hook": {"site": os.fsdecode(facts.site_packages), "installed": state.installed,
                 "active": facts.hook_active},
        "library_dirs": {"source": source, "directories": [os.fsdecode(directory) for directory in directories]},
        "shared_objects": 0,
        "failing": [],
    }
    if header.interpreter is None:  # a static Python loads no extension module at all
        return report
    inspector = default_inspector()

    def inspect(path: bytes):
        return inspector.inspect(path, env=env, ld=header.interpreter, nix_ld=False)

    # The Python itself and what it needs are loaded before any extension module.
    own = inspect(facts.executable)
    loaded = {library.soname for library in own.libraries if library.path is not None}
    loaded.add(os.path.basename(header.interpreter))
    hook = _HookSearch(directories, header.abi, inspector.objects, lambda path: unfound(inspect(path), loaded))
    inspections = {path: inspect(path) for path in sorted(shared_objects(facts.library_dirs,
                                                                            facts.extension_suffixes, header.abi))}
    report["shared_objects"] = len(inspections)
    # A library that another one there needs (numpy.libs' libopenblas, torch/lib's libtorch) is
    # loaded as that one's need, where what it needs in turn may be loaded already: only what
    # nothing needs is loaded by itself, by an import or by ctypes.
    needed = {os.path.realpath(library.path) for inspection in inspections.values()
              for library in inspection.libraries if library.path is not None}
    for path, inspection in inspections.items():
        missing = unfound(inspection, loaded)
        if missing and os.path.realpath(path) not in needed:
            report["failing"].append(hook.module_facts(path, missing, facts.library_dirs))
    return report


def unfound(inspection, loaded: set[bytes]) -> dict[bytes, list[bytes]]:
    """What the loader, by itself, does not find of what an inspected file needs, with who needs
    each; what the Python has loaded already (`loaded`) counts as found."""
    missing: dict[bytes, list[bytes]] = {}
    for library in inspection.libraries:
        if library.path is None and library.soname not in loaded:
            missing.setdefault(library.soname, []).extend(library.needed_by)
    return missing


def shared_objects(directories, suffixes, abi):
    """The ELF shared objects of the machine `abi` under `directories` whose names end in one of
    the extension module `suffixes` (`.so` among them, which ctypes-loaded libraries have too),
    each once."""
    seen = set()
    endings = tuple(os.fsencode(suffix) for suffix in suffixes)
    for top in directories:
        for root, dirs, files in os.walk(top):
            dirs[:] = sorted(name for name in dirs if name != b"__pycache__")
            for name in sorted(files):
                if not name.endswith(endings):
                    continue
                path = os.path.join(root, name)
                real = os.path.realpath(path)
                if real in seen:
                    continue
                seen.add(real)
                try:
                    header = elf.read_header(path)
                except (OSError, elf.ElfError):
                    continue
                if header.type == elf.ET_DYN and header.abi == abi:
                    yield path


class _HookSearch:
    """What the hook would load for what the loader does not find, as it searches: each name
    once, in the NIX_LD directories, then what that library needs in turn."""

    def __init__(self, directories, abi, objects, unfound) -> None:
        self.directories = directories
        self.abi = abi
        self.objects = objects
        self.unfound = unfound
        self.found: dict[bytes, bytes | None] = {}  # soname -> where the hook finds it (None: nowhere)
        self.needs: dict[bytes, dict[bytes, list[bytes]]] = {}  # soname -> what its library misses

    def module_facts(self, path: bytes, missing: dict[bytes, list[bytes]], site_dirs) -> dict:
        """One shared object the loader does not load by itself: what it misses, what the hook
        would load and from where, and what would be missing still."""
        loads, absent = {}, {}
        queue = list(missing.items())
        while queue:
            name, needers = queue.pop(0)
            if name in loads or name in absent:
                continue
            where = self._find(name)
            if where is None:
                absent[name] = needers
                continue
            loads[name] = where
            queue.extend(self.needs[name].items())
        return {
            "path": os.fsdecode(path),
            "relative": os.fsdecode(_relative(path, site_dirs)),
            "missing": [os.fsdecode(name) for name in missing],
            "hook_loads": [{"soname": os.fsdecode(name), "path": os.fsdecode(where)} for name, where in loads.items()],
            "still_missing": [{"soname": os.fsdecode(name), "needed_by": [os.fsdecode(n) for n in dict.fromkeys(needers)]}
                              for name, needers in absent.items()],
        }

    def _find(self, name: bytes) -> bytes | None:
        if name not in self.found:
            where = self.found[name] = self._first_fit(name)
            if where is not None:
                self.needs[name] = self.unfound(where)
        return self.found[name]

    def _first_fit(self, name: bytes) -> bytes | None:
        """The file the hook would load for `name`: the first in the NIX_LD directories of the
        Python's machine whose soname is `name` (loaded by its path, a library answers to its
        soname only)."""
        from nixld.objects import ObjectError

        for directory in self.directories:
            candidate = os.path.join(os.path.abspath(directory), name)
            if self.objects.abi_of(candidate) != self.abi:
                continue
            try:
                obj = self.objects.load(candidate)
            except (OSError, ObjectError):
                continue
            if obj.type == elf.ET_DYN and obj.soname == name:
                return candidate
        return None


def _relative(path: bytes, site_dirs) -> bytes:
    for directory in site_dirs:
        if path.startswith(directory.rstrip(b"/") + b"/"):
            return path[len(directory.rstrip(b"/")) + 1:]
    return path


def hook_directories(report: dict) -> list[str]:
    """The NIX_LD directories the hook would load something from, for any shared object."""
    used = [os.path.dirname(load["path"]) for module in report["failing"] for load in module["hook_loads"]]
    return list(dict.fromkeys(used))


def where_looked(report: dict) -> str:
    """The NIX_LD directories and their variable, in the words of a finding."""
    dirs = report["library_dirs"]
    origin = config.source_phrase(dirs["source"], report["system"], "NIX_LD_LIBRARY_PATH", why=True)
    if not dirs["directories"]:
        return f"none ({dirs['source']} names none)"
    return f"{', '.join(dirs['directories'])} ({origin})"
