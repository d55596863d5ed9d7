"""`nixld python-hook`: nixld's Python hook put into a Python environment, or taken out of it.

Plan, then act. describe_python() asks the Python (the only thing run: `PYTHON -E -s -c QUERY`
answers with its version, its site-packages and whether the hook is loaded in it); plan_install()
and plan_remove() are pure functions of that answer and of what the site-packages directory
holds, and return the files to write and to remove, as data; perform() carries a plan out so
that nothing is left half-done whatever fails: new files are written and compiled beside their
place, then renamed into it, the .pth file last (and, on removal, first), so that the .pth file
never names a module that is not there.

The hook itself is nixld/python_hook/: two modules that need only the standard library, copied
as they are (see their docstrings).
"""

from __future__ import annotations

import errno
import glob
import json
import os
from collections import namedtuple

from nixld import config, elf
from nixld.errors import NixLdError, NotExecutable, ProgramNotFound, display

HOOK_MODULES = ("_nixld_python_hook", "_nixld_python_hook_rescue")
PTH_FILE = "nixld-python-hook.pth"
PTH_IMPORT = b"import _nixld_python_hook; _nixld_python_hook.activate()\n"
OLDEST = (3, 8)
SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "python_hook")
# How long a Python may take to say what it is, or to compile the hook.
TIMEOUT = 60

# Run by the Python asked about, whatever its version: Python 2's syntax too, so that a Python
# too old is told so rather than taken for something else. The answer is the last line that
# starts with the mark, in case a sitecustomize prints something of its own.
ANSWER_MARK = "nixld-python-hook-answer "
QUERY = r"""
import json, sys
answer = {"version": list(sys.version_info[:3]),
          "implementation": getattr(getattr(sys, "implementation", None), "name", "cpython")}
if sys.version_info >= (3, 8):
    import importlib.machinery, os, site, sysconfig
    answer.update(executable=os.path.realpath(sys.executable), cache_tag=sys.implementation.cache_tag,
                  purelib=sysconfig.get_path("purelib"), platlib=sysconfig.get_path("platlib"),
                  site_dirs=site.getsitepackages() if hasattr(site, "getsitepackages") else [],
                  extension_suffixes=importlib.machinery.EXTENSION_SUFFIXES,
                  hook_active="_nixld_python_hook" in sys.modules)
sys.stdout.write("%s%s\n" % (MARK, json.dumps(answer)))
""".replace("MARK", repr(ANSWER_MARK))

PythonFacts = namedtuple("PythonFacts", "python executable version implementation cache_tag site_packages "
                                        "library_dirs extension_suffixes hook_active")
PythonFacts.__doc__ = """What a Python said of itself: `python` as named (bytes), `executable` the
real file it runs (bytes), `version` a (major, minor, micro) tuple, `implementation` ("cpython"),
`cache_tag` ("cpython-311", its .pyc files' tag), `site_packages` the directory the hook goes to
(bytes), `library_dirs` every site-packages directory that holds its modules (bytes),
`extension_suffixes` the file endings of its extension modules, `hook_active` whether the hook
was loaded when it answered."""

HookPlan = namedtuple("HookPlan", "site writes compile removes")
HookPlan.__doc__ = """What install or remove will do in `site` (bytes): `writes` the (file name,
bytes) to write, in the order they take their place (the .pth file last); `compile` the names of
the modules among them to compile with the Python; `removes` the file names to remove, in order
(the .pth file first); names are relative to `site`."""

HookState = namedtuple("HookState", "installed pth modules compiled ours version")
HookState.__doc__ = """What `site` holds of the hook: whether the .pth file is there (`pth`) and
is nixld's, which of the modules are there, which have a .pyc for the Python (`compiled`),
whether the modules are this nixld's, byte for byte (`ours`), and the nixld version the .pth
file names (None when there is none); `installed` when all of it is there."""


class HookError(NixLdError):
    """The hook cannot be installed or removed where asked (exit status 1)."""


def hook_sources() -> dict[str, bytes]:
    """This nixld's hook modules, by file name: what install writes."""
    sources = {}
    for module in HOOK_MODULES:
        with open(os.path.join(SOURCE_DIR, module + ".py"), "rb") as stream:
            sources[module + ".py"] = stream.read()
    return sources


def pth_contents(version: str) -> bytes:
    """The .pth file: a comment that says what it is and how it goes, and the line that
    activates the hook at start-up."""
    return (f"# nixld {version}'s Python hook; `nixld python-hook remove --python PYTHON` takes it "
            f"away\n").encode() + PTH_IMPORT


def describe_python(python: bytes, env) -> PythonFacts:
    """Ask the Python `python` (a path, or a name found on env's PATH) what it is and where its
    site-packages are. Raises ProgramNotFound (127), NotExecutable (126: it cannot be started,
    is not a Python, or not a CPython 3.8 or newer) or HookError."""
    import subprocess  # start-up time: only python-hook and doctor --python run a Python

    from nixld.loader import file_mode, resolve_program

    path = resolve_program(python, env)
    shown = display(python)
    file_mode(path, shown)
    try:
        result = subprocess.run([path, b"-E", b"-s", b"-c", QUERY.encode()], env=env, capture_output=True,
                                stdin=subprocess.DEVNULL, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise HookError(f"{shown} did not say what it is within {TIMEOUT} s") from None
    except OSError as error:
        # As a shell says it: an interpreter not found is 127; an ELF Python whose own loader
        # is missing (one built elsewhere, on NixOS) cannot be executed, 126.
        script = (_read_head(path) or b"").startswith(b"#!")
        failure = ProgramNotFound if isinstance(error, FileNotFoundError) and script else NotExecutable
        raise failure(f"{shown} cannot be started: {error.strerror}"
                      + (" (its #! interpreter does not exist)" if failure is ProgramNotFound else "")) from error
    answer = _answer(result.stdout)
    if answer is None:
        said = next((line.strip() for line in reversed(result.stderr.splitlines()) if line.strip()), b"")
        what = f"it answered: {display(said)}" if said else f"it said nothing (exit status {result.returncode})"
        raise NotExecutable(f"{shown} is not a Python: asked for its version and site-packages, {what}")
    version = tuple(answer["version"])
    name = {"cpython": "CPython", "pypy": "PyPy"}.get(answer["implementation"], answer["implementation"])
    release = ".".join(map(str, version))
    if answer["implementation"] != "cpython":
        raise NotExecutable(f"{shown} is {name} {release}: the hook is for CPython (3.8 or newer)")
    if version < OLDEST:
        raise NotExecutable(f"{shown} is Python {release}: the hook needs Python "
                            f"{'.'.join(map(str, OLDEST))} or newer")
    library_dirs = [os.fsencode(answer["purelib"]), os.fsencode(answer["platlib"])]
    return PythonFacts(
        python=path, executable=os.fsencode(answer["executable"]), version=version,
        implementation=answer["implementation"], cache_tag=answer["cache_tag"],
        site_packages=_site_packages(shown, answer), library_dirs=tuple(dict.fromkeys(library_dirs)),
        extension_suffixes=tuple(answer["extension_suffixes"]), hook_active=answer["hook_active"])


def _answer(stdout: bytes) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(ANSWER_MARK.encode()):
            try:
                answer = json.loads(line[len(ANSWER_MARK):])
            except ValueError:
                return None
            return answer if isinstance(answer, dict) and "version" in answer else None
    return None


def _site_packages(shown: str, answer: dict) -> bytes:
    """The directory the hook goes to: the environment's purelib (a virtualenv's own), which
    must be one its site module reads .pth files from."""
    purelib = answer["purelib"]
    read = {os.path.realpath(directory) for directory in answer["site_dirs"]}
    if read and os.path.realpath(purelib) not in read:
        raise HookError(f"{shown}: its site-packages {purelib} is not one of the directories its site module "
                        f"reads .pth files from ({', '.join(answer['site_dirs'])})")
    return os.fsencode(purelib)


def python_system(facts: PythonFacts) -> str | None:
    """The Nix system of the Python's executable (x86_64_linux), as its ELF header says:
    which NIX_LD_LIBRARY_PATH_{system} it reads. None when it is not ELF or Nix has no name."""
    try:
        return elf.read_header(facts.executable).system
    except (OSError, elf.ElfError):
        return None


def search_directories(facts: PythonFacts, env) -> tuple[tuple[bytes, ...], str, str | None]:
    """The directories the hook would search in this Python started with `env`, the variable
    they come from (or "default"), and the Python's system."""
    system = python_system(facts)
    directories, source = config.nix_ld_library_dirs(env, system)
    return directories, source, system


def hook_state(site: bytes, cache_tag: str, sources: dict[str, bytes]) -> HookState:
    """What `site` holds of the hook (see HookState), compared with `sources`."""
    pth = _read(os.path.join(site, PTH_FILE.encode()))
    version = None
    if pth is not None:
        lines = pth.splitlines(keepends=True)
        if len(lines) == 2 and lines[1] == PTH_IMPORT and lines[0].startswith(b"# nixld "):
            version = lines[0].split()[2].split(b"'")[0].decode(errors="replace")
    modules = tuple(name for name in sources if _read(os.path.join(site, name.encode())) is not None)
    compiled = tuple(name for name in modules if os.path.isfile(os.path.join(site, _pyc(name, cache_tag))))
    ours = all(_read(os.path.join(site, name.encode())) == data for name, data in sources.items())
    return HookState(installed=version is not None and len(modules) == len(sources), pth=pth is not None,
                     modules=modules, compiled=compiled, ours=ours, version=version)


def plan_install(facts: PythonFacts, state: HookState, sources: dict[str, bytes], version: str) -> HookPlan:
    """Write the modules and the .pth file (again, when they are there: an update) and compile
    the modules for the Python; refuses a .pth file of that name that is not nixld's."""
    site = facts.site_packages
    if state.pth and state.version is None:
        raise HookError(f"{display(os.path.join(site, PTH_FILE.encode()))} is not nixld's: remove it, "
                        "then install again")
    writes = tuple(sources.items()) + ((PTH_FILE, pth_contents(version)),)
    return HookPlan(site=site, writes=writes, compile=tuple(sources), removes=())


def plan_remove(facts: PythonFacts, state: HookState, sources: dict[str, bytes]) -> HookPlan:
    """Remove the .pth file, then the modules and their .pyc files (of every Python version);
    refuses a .pth file of that name that is not nixld's."""
    site = facts.site_packages
    if state.pth and state.version is None:
        raise HookError(f"{display(os.path.join(site, PTH_FILE.encode()))} is not nixld's: it is left as it is")
    removes = [PTH_FILE] if state.pth else []
    for name in sources:
        removes.append(name)
        stem = name[:-len(".py")]
        removes += sorted(os.path.relpath(path, site).decode()
                          for path in glob.glob(os.path.join(glob.escape(site), b"__pycache__",
                                                             glob.escape(stem.encode()) + b".*.pyc")))
    present = [name for name in removes if os.path.lexists(os.path.join(site, name.encode()))]
    return HookPlan(site=site, writes=(), compile=(), removes=tuple(present))


def perform(plan: HookPlan, facts: PythonFacts) -> None:
    """Carry out `plan`: write and compile beside the final places, then rename into them in
    order; remove in order. Raises HookError, having undone what it did, when it cannot."""
    site = plan.site
    shown = display(site)
    if not os.path.isdir(site):
        raise HookError(f"{display(facts.python)}: its site-packages {shown} does not exist")
    staged: list[tuple[bytes, bytes]] = []  # (temporary, final), in commit order
    placed: list[bytes] = []
    cache = os.path.join(site, b"__pycache__")
    cache_existed = os.path.lexists(cache)
    try:
        for name, data in plan.writes:
            final = os.path.join(site, name.encode())
            temporary = _write_beside(final, data, shown)
            staged.append((temporary, final))
            if name in plan.compile:
                staged.append(_compile(facts, temporary, final))
        # Modules and their .pyc files first, the .pth file last: it is what makes them count.
        for temporary, final in staged:
            existed = os.path.lexists(final)
            os.replace(temporary, final)
            if not existed:
                placed.append(final)
    except BaseException as error:
        for temporary, _ in staged:
            _unlink(temporary)
        # A fresh install that failed half-way is taken back; an update keeps the files it
        # replaced already, which fit the .pth file there.
        for final in placed:
            _unlink(final)
        if not cache_existed:
            _rmdir(cache)
        if isinstance(error, OSError):
            raise HookError(_write_failure(facts, shown, error)) from error
        raise
    for name in plan.removes:
        path = os.path.join(site, name.encode())
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as error:
            raise HookError(f"cannot remove {display(path)}: {error.strerror}") from error
    if any(name.startswith("__pycache__/") for name in plan.removes):
        _rmdir(cache)  # the hook's .pyc files may have been all it held, and install may have made it


def _write_beside(final: bytes, data: bytes, shown: str) -> bytes:
    import tempfile

    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(final), prefix=b".nixld-hook-")
    try:
        os.write(fd, data)
        os.fchmod(fd, 0o644)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink(temporary)
        raise
    os.close(fd)
    return temporary


def _compile(facts: PythonFacts, source: bytes, final: bytes) -> tuple[bytes, bytes]:
    """Compile `source` with the Python into a .pyc beside where final's belongs; (temporary,
    final) of that .pyc. The interpreter loads it at start-up for final (the source keeps its
    time and size when it is renamed), which is why install compiles at all: a Python that
    does not write .pyc files (PYTHONDONTWRITEBYTECODE) would compile the hook at every start."""
    import subprocess

    pyc = os.path.join(os.path.dirname(final), _pyc(os.path.basename(final).decode(), facts.cache_tag))
    temporary = os.path.join(os.path.dirname(pyc), b".nixld-hook-" + os.path.basename(source) + b".pyc")
    code = "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], dfile=sys.argv[3], doraise=True)"
    try:
        result = subprocess.run([facts.python, b"-E", b"-s", b"-c", code.encode(), source, temporary, final],
                                capture_output=True, stdin=subprocess.DEVNULL, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise HookError(f"{display(facts.python)} could not compile the hook: {error}") from None
    if result.returncode != 0:
        _unlink(temporary)
        said = next((line.strip() for line in reversed(result.stderr.splitlines()) if line.strip()), b"")
        raise HookError(f"{display(facts.python)} could not compile the hook: {display(said)}")
    return temporary, pyc


def _pyc(module_file: str, cache_tag: str) -> bytes:
    return os.path.join(b"__pycache__", f"{module_file[:-len('.py')]}.{cache_tag}.pyc".encode())


def _write_failure(facts: PythonFacts, shown: str, error: OSError) -> str:
    said = f"cannot write to {shown}, the site-packages of {display(facts.python)}: {error.strerror or error}"
    if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
        return said
    return (f"{said}; make a virtualenv of it (python3 -m venv .venv) and name its python: "
            "nixld python-hook install --python .venv/bin/python")


def _read_head(path: bytes) -> bytes | None:
    try:
        fd = elf.open_regular(path)
    except (OSError, elf.NotRegularFile):
        return None
    try:
        return os.pread(fd, 2, 0)
    finally:
        os.close(fd)


def _read(path: bytes) -> bytes | None:
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError:
        return None


def _rmdir(path: bytes) -> None:
    """Remove the directory at `path` if it is empty."""
    try:
        os.rmdir(path)
    except OSError:
        pass


def _unlink(path: bytes) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
