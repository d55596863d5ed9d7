"""Plan the launch of a foreign program, then perform it.

`plan_launch` is a pure function of (program file, arguments, environment): it reads a few
hundred bytes of the program and the loader, decides everything, and returns a LaunchPlan.
`exec_plan` performs a plan with one call into the C core.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections import namedtuple
from collections.abc import Iterable, Mapping

from nixld import config, elf
from nixld._execve import c_core_unavailable, execve
from nixld.errors import (
    ArchitectureMismatch,
    LaunchError,
    LoaderError,
    NotExecutable,
    ProgramNotFound,
    display,
)

# How the plan starts the program.
MODE_LIBRARY_PATH = "library-path"  # LOADER --library-path DIRS ... PROGRAM: environment untouched
MODE_ENVIRONMENT = "environment"  # LOADER PROGRAM with LD_LIBRARY_PATH set: nix-ld's way
MODE_DIRECT = "direct"  # static programs and scripts: exec'd as they are

_LIBRARY_PATH_OPTION = b"--library-path"
_ARGV0_OPTION = b"--argv0"

# How a loader's file shows which C library it belongs to (a string in its read-only data),
# and the strings its option names are stored as. glibc compares whole arguments with strcmp;
# musl compares what follows the leading "--" (argv[i]+2), so it stores the names without it.
# A loader of neither kind is taken at its word: glibc's spelling or nothing. musl comes first:
# its read-only data is six times glibc's, and a search that fails reads all of it.
_GLIBC_SPELLING = {_LIBRARY_PATH_OPTION: b"--library-path", _ARGV0_OPTION: b"--argv0"}
_LOADER_KINDS = (
    ("musl", b"musl libc", {_LIBRARY_PATH_OPTION: b"library-path", _ARGV0_OPTION: b"argv0"}),
    ("glibc", b"GLIBC_PRIVATE", _GLIBC_SPELLING),
)
_UNKNOWN_LOADER = ("unrecognised", None, _GLIBC_SPELLING)
# Far more read-only data than any loader has (glibc's: 44 KiB, musl's: 290 KiB).
_LOADER_DATA_LIMIT = 16 << 20

# Linux reads this much of a file to find its #! line (BINPRM_BUF_SIZE).
_SHEBANG_LIMIT = 256


class LaunchPlan(
    namedtuple(
        "LaunchPlan",
        "program executable argv env mode system loader loader_source library_path"
        " log_level decisions",
    )
):
    """Everything a launch will do, as data; nothing has been executed.

    - program: the program's path (found on PATH if need be); executable: what execve runs
      (the loader, or the program itself in direct mode); argv and env: what execve gets
      (env as its entries, normally NAME=value, duplicates and all, in order).
    - mode: MODE_LIBRARY_PATH, MODE_ENVIRONMENT or MODE_DIRECT; system: the program's Nix
      system (`x86_64_linux`), None for scripts run directly; loader, loader_source: the loader and the
      setting it came from (None in direct mode); library_path: the directories handed to it.
    - log_level: NIX_LD_LOG's level (a name from config.LOG_LEVELS); decisions: (level,
      message) pairs explaining the plan.
    """

    __slots__ = ()


def plan_launch(
    path: str | bytes | os.PathLike,
    libs: Iterable[str | bytes | os.PathLike] = (),
    *,
    argv: Iterable[str | bytes | os.PathLike] | None = None,
    env: Mapping[str | bytes, str | bytes] | None = None,
    ld: str | bytes | os.PathLike | None = None,
    cwd: str | bytes | os.PathLike | None = None,
) -> LaunchPlan:
    """Plan how to run the program at `path` with the extra library directories `libs`.

    `libs` is one directory or an iterable of them (None: none); `argv` a sequence of
    arguments whose first is what the program sees (default: `path`); `env` defaults to
    os.environb; `ld` overrides the loader; `cwd` is the directory the program will start in
    (relative paths are taken from there, as subprocess.Popen takes them). Raises a
    LaunchError subclass when the program or its loader cannot be used, TypeError or
    ValueError for arguments of the wrong kind.
    """
    name = _fs(path, "program path")
    if isinstance(argv, (str, bytes, bytearray, os.PathLike)):
        raise TypeError(f"argv must be a sequence of arguments, not one {type(argv).__name__} "
                        "(it would be split into characters): write [program, arg, ...]")
    argv = (name,) if argv is None else tuple(_fs(item, "argument") for item in argv)
    if not argv:
        raise ValueError("argv must contain at least argv[0]")
    return plan_command(
        name,
        argv,
        environment_entries(os.environb if env is None else byte_environment(env)),
        library_directories(libs),
        None if ld is None else _fs(ld, "loader path"),
        None if cwd is None else _fs(cwd, "working directory"),
    )


def plan_command(
    name: bytes,
    argv: tuple[bytes, ...],
    env_entries: tuple[bytes, ...],
    libs: tuple[bytes, ...],
    ld: bytes | None,
    cwd: bytes | None = None,
) -> LaunchPlan:
    """plan_launch for arguments that are already bytes and checked (the command line's);
    `env_entries` is the environment block to pass on, entry by entry."""
    env = caller_settings(env_entries)
    level_index, log_complaint = config.log_level(env)
    log_level = config.LOG_LEVELS[level_index]
    decisions = [] if log_complaint is None else [("warn", log_complaint)]
    files = _Files(cwd)

    program = resolve_program(name, env, cwd)
    header, file_mode = _read_program(files, program)
    if header is None:
        program, argv, header, file_mode = _script_plan(files, name, program, argv, libs, ld, decisions)
        if header is None:
            return _direct_plan(program, argv, env_entries, None, log_level, decisions)
    system = header.system
    chosen = launch_loader(env, ld, program, header, files)
    if chosen is None:
        _refuse_loader_options(libs, ld, f"{display(program)} is statically linked", "run it")
        decisions.append(("info", f"{display(program)} is statically linked: running it directly"))
        return _direct_plan(program, argv, env_entries, system, log_level, decisions)

    loader, loader_source, kind, loader_options = chosen
    nix_dirs, nix_dirs_source = config.nix_ld_library_dirs(env, system)
    library_path = config.library_search_path(
        config.split_ld_library_path(env.get(b"LD_LIBRARY_PATH")), config.split_library_arguments(libs), nix_dirs
    )
    joined = b":".join(library_path)
    operand = _loader_operand(program)

    decisions.append(("info", f"{display(program)}: {header.machine_name} program, interpreter "
                              f"{display(header.interpreter)}"))
    options = " ".join(option.decode() for option in loader_options) or "none"
    decisions.append(("info", f"loader {display(loader)} ({config.source_phrase(loader_source, system, why=True)}): "
                              f"{_a(kind)} loader; launch options: {options}"))
    decisions.append(("info", f"library path {display(joined) or '(empty)'} (LD_LIBRARY_PATH, "
                              f"-L, then {config.source_phrase(nix_dirs_source, system, 'NIX_LD_LIBRARY_PATH', why=True)})"))
    if file_mode & (stat.S_ISUID | stat.S_ISGID):
        decisions.append(("warn", f"{display(program)} is set-user-ID or set-group-ID; started "
                                  "through a loader it runs without those privileges"))

    entries = env_entries
    exec_argv = [loader]
    if _LIBRARY_PATH_OPTION in loader_options:
        mode = MODE_LIBRARY_PATH
        exec_argv += [_LIBRARY_PATH_OPTION, joined]
    else:
        mode = MODE_ENVIRONMENT
        entries = _with_variable(entries, b"LD_LIBRARY_PATH", joined)
        decisions.append(("warn", f"loader {display(loader)} has no --library-path option: "
                                  "passing the library path in LD_LIBRARY_PATH, which the "
                                  "program's children will inherit"))
    if _ARGV0_OPTION in loader_options:
        exec_argv += [_ARGV0_OPTION, argv[0]]
    elif argv[0] != operand:
        decisions.append(("warn", f"loader {display(loader)} has no --argv0 option (glibc "
                                  f"before 2.33, or an old musl): the program sees argv[0] = "
                                  f"{display(operand)!r}, not {display(argv[0])!r}"))
    exec_argv += [operand, *argv[1:]]
    decisions.append(("trace", "execve " + " ".join(display(arg) for arg in exec_argv)))
    return LaunchPlan(
        program=program, executable=loader, argv=tuple(exec_argv), env=entries, mode=mode,
        system=system, loader=loader, loader_source=loader_source, library_path=library_path,
        log_level=log_level, decisions=tuple(decisions),
    )


def initial_environment() -> tuple[bytes, ...]:
    """The environment block this process was started with, entry by entry: its caller's,
    exactly, with a name given twice given twice and entries without "=" kept.

    os.environb is not quite that: CPython may add LC_CTYPE at start-up (PEP 538's locale
    coercion), which a program that nixld starts for its own caller must not see, and it keeps
    the last of two entries with one name where getenv() finds the first. Where /proc is not
    mounted, os.environb is the best there is.
    """
    try:
        with open("/proc/self/environ", "rb") as stream:
            block = stream.read()
    except OSError:
        return environment_entries(os.environb)
    return tuple(block.split(b"\0")[:-1]) if block else ()


def environment_entries(env: Mapping[bytes, bytes]) -> tuple[bytes, ...]:
    """The environment block that holds `env`'s variables, in its order."""
    return tuple(name + b"=" + value for name, value in env.items())


def environment_lookup(entries: Iterable[bytes]) -> dict[bytes, bytes]:
    """The variables an environment block defines, as getenv() finds them: of two entries with
    one name the first, and nothing for an entry without a name or "="."""
    variables: dict[bytes, bytes] = {}
    for entry in entries:
        name, equals, value = entry.partition(b"=")
        if equals and name:
            variables.setdefault(name, value)
    return variables


def ld_library_path_entry(entries: Iterable[bytes]) -> bytes | None:
    """The value of the last LD_LIBRARY_PATH entry of an environment block, as glibc's loader
    reads it; None when there is none."""
    # The loader reads every entry of the block, each LD_LIBRARY_PATH replacing the one
    # before, where getenv() stops at the first.
    value = None
    for entry in entries:
        if entry.startswith(b"LD_LIBRARY_PATH="):
            value = entry[len(b"LD_LIBRARY_PATH="):]
    return value


def caller_settings(entries: Iterable[bytes]) -> dict[bytes, bytes]:
    """The variables of an environment block as nixld decides with them: as environment_lookup
    finds them, but LD_LIBRARY_PATH as glibc's loader reads it (ld_library_path_entry)."""
    entries = tuple(entries)
    variables = environment_lookup(entries)
    library_path = ld_library_path_entry(entries)
    if library_path is not None:
        variables[b"LD_LIBRARY_PATH"] = library_path
    return variables


def resolve_program(name: bytes, env: Mapping[bytes, bytes], cwd: bytes | None = None) -> bytes:
    """Find `name` as execvp would: as given when it has a slash, else on env's PATH
    (relative PATH entries taken from `cwd`, when given).

    A candidate that exists but is not executable is kept only if nothing better is found,
    so that the error says "permission denied" rather than "not found", as execvp does.
    """
    if not name:
        raise ProgramNotFound("empty program name: name a program to run")
    if b"/" in name:
        return name
    search = env.get(b"PATH")
    if search is None:
        search = os.fsencode(os.defpath)
    files = _Files(cwd)
    not_executable = None
    for directory in search.split(b":"):
        # An empty PATH entry is the current directory; the result always has a slash so
        # that the loader opens it as a path instead of searching its library path.
        candidate = (directory or b".") + b"/" + name
        try:
            mode = os.stat(files.at(candidate)).st_mode
        except OSError:
            continue
        if not stat.S_ISREG(mode):
            continue
        if os.access(files.at(candidate), os.X_OK):
            return candidate
        if not_executable is None:
            not_executable = candidate
    if not_executable is not None:
        return not_executable
    raise ProgramNotFound(f"{display(name)}: command not found on PATH")


def report(plan: LaunchPlan, stream=None) -> None:
    """Write the plan's decisions at or above NIX_LD_LOG's level to `stream` (stderr). A
    closed or failing stream loses them: they must not stop the launch they describe."""
    threshold = config.LOG_LEVELS.index(plan.log_level)
    lines = [
        f"nixld: {level}: {message}\n"
        for level, message in plan.decisions
        if config.LOG_LEVELS.index(level) <= threshold
    ]
    stream = sys.stderr if stream is None else stream
    if lines and stream is not None:  # None: Python was started with fd 2 closed
        try:
            stream.write("".join(lines))
            stream.flush()
        except (OSError, ValueError):  # ValueError: a stream closed by its owner
            pass


def exec_plan(plan: LaunchPlan):
    """Replace this process with the plan's program; returns only by raising a LaunchError."""
    if config.LOG_LEVELS.index(plan.log_level) >= config.LOG_LEVELS.index("debug"):
        reason = c_core_unavailable()
        if reason:
            plan = plan._replace(decisions=plan.decisions + (("debug", reason),))
    report(plan)
    _flush_stdio()
    try:
        execve(plan.executable, plan.argv, plan.env)
    except OSError as error:
        raise _exec_failure(plan.executable, error) from error


def exec_foreign(
    path: str | bytes | os.PathLike,
    libs: Iterable[str | bytes | os.PathLike] = (),
    *,
    argv: Iterable[str | bytes | os.PathLike] | None = None,
    env: Mapping[str | bytes, str | bytes] | None = None,
    ld: str | bytes | os.PathLike | None = None,
):
    """Replace this process with the foreign program at `path`, started through its loader.

    Same arguments as plan_launch. Never returns; raises a LaunchError subclass (with the
    shell exit status in `exit_status`) when the program cannot be started.
    """
    exec_plan(plan_launch(path, libs, argv=argv, env=env, ld=ld))


def popen_arguments(plan: LaunchPlan) -> dict:
    """The subprocess.Popen keyword arguments that start the plan as a child process (Popen
    takes a mapping, so an environment block with a name twice cannot be passed this way)."""
    return {"args": list(plan.argv), "executable": plan.executable,
            "env": dict(entry.split(b"=", 1) for entry in plan.env if b"=" in entry)}


def _direct_plan(program, argv, env_entries, system, log_level, decisions) -> LaunchPlan:
    return LaunchPlan(
        program=program, executable=program, argv=argv, env=env_entries,
        mode=MODE_DIRECT, system=system, loader=None, loader_source=None, library_path=(),
        log_level=log_level, decisions=tuple(decisions),
    )


class _Files:
    """Where the planner reads files: paths are as the program will see them, relative to
    `cwd` when a child is to start there."""

    def __init__(self, cwd: bytes | None) -> None:
        self.cwd = cwd

    def at(self, path: bytes) -> bytes:
        if self.cwd is None or path.startswith(b"/"):
            return path
        return self.cwd + b"/" + path


def file_mode(path: bytes, shown: str) -> int:
    """The mode of the file a user named (shown as `shown`); raises ProgramNotFound when it
    does not exist, NotExecutable when it cannot be looked at or is a directory."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ProgramNotFound(f"{shown}: no such file") from None
    except NotADirectoryError:
        raise ProgramNotFound(f"{shown}: no such file (a component of the path is not a directory)") from None
    except OSError as error:
        raise NotExecutable(f"{shown}: {error.strerror}") from error
    if stat.S_ISDIR(mode):
        raise NotExecutable(f"{shown}: is a directory")
    return mode


def _read_program(files: _Files, program: bytes) -> tuple[elf.ElfHeader | None, int]:
    """The program's ELF header (None for a #! script) and its file mode; raises for
    everything that cannot be run."""
    shown = display(program)
    path = files.at(program)
    mode = file_mode(path, shown)
    if not stat.S_ISREG(mode):
        raise NotExecutable(f"{shown}: not a regular file")
    if not os.access(path, os.X_OK):
        raise NotExecutable(f"{shown}: permission denied (not executable: chmod +x it)")
    try:
        header = elf.read_header(path)
    except PermissionError:
        raise NotExecutable(f"{shown}: permission denied (executable but not readable, and a "
                            "loader started by hand must read the program)") from None
    except OSError as error:
        raise NotExecutable(f"{shown}: {error.strerror}") from error
    except elf.NotElf as error:
        if error.head.startswith(b"#!"):
            return None, mode
        raise NotExecutable(f"{shown}: not an ELF program or a #! script") from None
    except elf.ElfError as error:
        raise NotExecutable(f"{shown}: {error}") from None
    if header.type not in (elf.ET_EXEC, elf.ET_DYN):
        kind = elf.TYPE_NAMES.get(header.type, f"an ELF file of type {header.type}")
        raise NotExecutable(f"{shown}: is {kind}, not a program")
    if header.interpreter is None and header.entry == 0:
        raise NotExecutable(f"{shown}: is a shared library (it has no entry point), not a program")
    return header, mode


def _script_plan(files: _Files, name: bytes, script: bytes, argv: tuple[bytes, ...], libs: tuple[bytes, ...],
                 ld: bytes | None, decisions: list):
    """(program, argv, header, mode) for a #! script. An interpreter that is a dynamically
    linked program is planned as the program, whether its own loader exists or not, with the
    arguments the kernel would give it: INTERPRETER [ARGUMENT] SCRIPT ARGS... Any other
    interpreter starts the script directly (header None), as the kernel does; -L and --ld,
    which could not apply to it, are refused."""
    shown = display(script)
    try:
        with open(files.at(script), "rb") as stream:
            line = stream.read(_SHEBANG_LIMIT)[2:].split(b"\n", 1)[0]
    except OSError as error:
        raise NotExecutable(f"{shown}: {error.strerror}") from error
    interpreter, _, argument = line.strip(b" \t").replace(b"\t", b" ").partition(b" ")
    argument = argument.strip(b" ")
    if not interpreter:
        raise NotExecutable(f"{shown}: its #! line names no interpreter")
    if argv[0] != name:
        decisions.append(("warn", f"{shown} is a #! script: argv[0] {display(argv[0])!r} is not passed on, as "
                                  "the kernel starts a script with its interpreter's path as argv[0] and the "
                                  "script's path after it"))
    named = f"{shown}: its #! interpreter {display(interpreter)}"
    try:
        header, mode = _read_program(files, interpreter)
    except ProgramNotFound:
        raise ProgramNotFound(f"{named} does not exist") from None
    except LaunchError as error:
        # What is wrong with it is the kernel's to say, unless something was asked for it.
        what = f"cannot be started through a loader ({error.message})"
        _refuse_loader_options(libs, ld, f"{named} {what}", "correct the #! line, or run the script")
    else:
        if header is not None and header.interpreter is not None:
            decisions.append(("info", f"{named} is a dynamically linked program: starting it through the "
                                      f"loader, as `nixld run {display(interpreter)}"
                                      f"{' ' + display(argument) if argument else ''} {shown}` would"))
            script_argv = (interpreter, *((argument,) if argument else ()), script, *argv[1:])
            return interpreter, script_argv, header, mode
        what = "is a #! script itself" if header is None else "is statically linked"
        _refuse_loader_options(libs, ld, f"{named} {what}",
                               "start the program on its #! line through nixld run yourself, or run the script"
                               if header is None else "run the script")
    decisions.append(("info", f"{named} {what}: running the script directly"))
    return script, argv, None, 0


def _refuse_loader_options(libs: tuple[bytes, ...], ld: bytes | None, subject: str, remedy: str) -> None:
    """Raise NotExecutable when -L or --ld was given for what no loader will start (`subject`
    says what and why): they would be dropped without a word. `remedy` starts the advice,
    which ends "without" the options given."""
    given = " and ".join(option for option, value in (("-L", libs), ("--ld", ld)) if value)
    if given:
        raise NotExecutable(f"{subject}, so {given} cannot apply: {remedy} without {given}")


def launch_loader(env: Mapping[bytes, bytes], ld: bytes | None, program: bytes, header: elf.ElfHeader,
                  files: _Files | None = None) -> tuple[bytes, str, str, tuple[bytes, ...]] | None:
    """The loader `nixld run` hands `program` (whose ELF header is `header`) to, checked:
    (loader, the setting it came from, which C library's it is, the launch options it takes),
    or None for a statically linked program, which starts by itself. Raises
    ArchitectureMismatch for another machine's program when no loader was named for its
    system, LoaderError when the loader cannot start it.

    The one verdict on a program's loader: run refuses the launch on it, inspect exits with
    its status and doctor reports it as a problem."""
    system = header.system
    if not elf.host_runs(header) and not _loader_configured_for(env, system, ld):
        machine = header.machine_name
        raise ArchitectureMismatch(
            f"{display(program)} is {_a(machine)} program and this machine runs "
            f"{elf.host_machine_name()} (to run it under an emulator, "
            f"{_ask_for_a_loader(_loader_setting(system), machine)})"
        )
    if header.interpreter is None:
        return None
    loader, source, traits = choose_loader(env, system, ld, program, header, files)
    kind, options = traits or check_loader(loader, source, system, program, header, files)
    return loader, source, kind, options


def choose_loader(env: Mapping[bytes, bytes], system: str | None, ld: bytes | None, program: bytes,
                  header: elf.ElfHeader, files: _Files | None = None):
    """(loader, source, traits): the loader config.choose_loader names or, when nothing names
    one and nix-ld's default does not exist, the program's own interpreter (source
    "interpreter"), provided it is an ELF loader that fits: then `traits` is check_loader's
    answer for it; otherwise None, and the loader is still to be checked."""
    files = files or _Files(None)
    loader, source = config.choose_loader(env, system, ld)
    if source == "default" and header.interpreter is not None and not os.path.exists(files.at(loader)):
        try:
            traits = check_loader(header.interpreter, "interpreter", system, program, header, files)
        except LoaderError:
            pass  # the default's absence is what the user must hear about
        else:
            return header.interpreter, "interpreter", traits
    return loader, source, None


def check_loader(loader: bytes, source: str, system: str | None, program: bytes,
                 program_header: elf.ElfHeader, files: _Files | None = None) -> tuple[str, tuple[bytes, ...]]:
    """Check that `loader` (chosen from `source`) can start the program; return which C
    library's loader it is and the launch options it accepts. Raises LoaderError naming the
    loader and the setting to change."""
    files = files or _Files(None)
    shown = f"loader {display(loader)} ({config.source_phrase(source, system, why=True)})"
    advice = loader_advice(source, system, program_header.machine_name)
    try:
        fd = elf.open_regular(files.at(loader))
    except FileNotFoundError:
        raise LoaderError(shown, "does not exist", advice) from None
    except elf.NotRegularFile:
        raise LoaderError(shown, "is not a regular file", advice) from None
    except OSError as error:
        raise LoaderError(shown, f"cannot be opened ({error.strerror})", advice) from error
    try:
        try:
            header = elf.read_header_from(fd)
        except elf.ElfError as error:
            raise LoaderError(shown, f"is not an ELF program loader ({error})", advice) from None
        # A loader is a shared object that can also be run (ld.so, musl's libc.so), which a
        # static-pie program, also ET_DYN with an entry and no interpreter, marks as a PIE.
        if (header.type != elf.ET_DYN or header.interpreter is not None or header.entry == 0
                or elf.dynamic_flags_1(fd, header) & elf.DF_1_PIE):
            raise LoaderError(shown, f"is not an ELF program loader (it is {_what_elf_file(header)}; a loader "
                                     "is a shared object with an entry point and no interpreter)", advice)
        if header.abi != program_header.abi:
            raise LoaderError(shown, f"is {_a(header.machine_name)} loader but {display(program)} is "
                                     f"{_a(program_header.machine_name)} program",
                              _ask_for_a_loader(_loader_setting(program_header.system), program_header.machine_name))
        if not os.access(files.at(loader), os.X_OK):
            raise LoaderError(shown, "cannot be executed (permission denied, or a noexec mount)",
                              f"make it executable, or {advice}")
        ranges = elf.constant_data(header.loads)
        if sum(size for _, size in ranges) > _LOADER_DATA_LIMIT:
            raise LoaderError(shown, "is not an ELF program loader (it holds more read-only data than any "
                                     "loader)", advice)
        return _loader_traits(fd, ranges)
    except OSError as error:
        raise LoaderError(shown, f"cannot be read ({error.strerror})", advice) from error
    finally:
        os.close(fd)


def _loader_traits(fd: int, ranges: list[tuple[int, int]]) -> tuple[str, tuple[bytes, ...]]:
    """Which C library's loader this is, and the options it accepts, read from the loader's
    read-only data (`ranges`), where its strings are: a few tens of KiB, not the whole file."""
    pieces = [os.pread(fd, size, offset) for offset, size in ranges]
    for kind, mark, spellings in _LOADER_KINDS:
        if any(mark in piece for piece in pieces):
            break
    else:
        kind, _, spellings = _UNKNOWN_LOADER
    return kind, tuple(option for option, spelling in spellings.items()
                       if any(_holds_string(piece, spelling) for piece in pieces))


def _holds_string(data: bytes, string: bytes) -> bool:
    """True when `data` holds `string` as a C string of its own, with a NUL (or the edge of
    `data`) on both sides, as help text ("  --library-path PATH") does not."""
    start = data.find(string)
    while start != -1:
        end = start + len(string)
        if (start == 0 or data[start - 1] == 0) and (end == len(data) or data[end] == 0):
            return True
        start = data.find(string, start + 1)
    return False


def loader_advice(source: str, system: str | None, machine: str) -> str:
    """What to do about an unusable loader that came from `source`: change that very setting,
    as it is the one that wins."""
    if source == "--ld":
        return f"give --ld the path of {_a(machine)} loader (glibc's ld.so)"
    if source in ("default", "interpreter"):
        if system is None:
            return f"set NIX_LD to the path of {_a(machine)} loader (glibc's ld.so)"
        return (f"set NIX_LD (or NIX_LD_{system}) to the path of {_a(machine)} loader (glibc's "
                "ld.so); on NixOS, programs.nix-ld.enable = true sets it for you")
    return f"set {source} to the path of {_a(machine)} loader (glibc's ld.so)"


def _loader_setting(system: str | None) -> str:
    """The setting that names a loader for programs of `system` alone (NIX_LD serves the
    host's own programs); --ld for a machine without a Nix system name."""
    return "--ld" if system is None else f"NIX_LD_{system}"


def _ask_for_a_loader(setting: str, machine: str) -> str:
    """Advice: name a loader for `machine` programs with `setting`."""
    if setting == "--ld":
        return (f"give --ld the path of {_a(machine)} loader ({machine} has no Nix system name, "
                "so no NIX_LD_* variable applies)")
    return f"set {setting} to the path of {_a(machine)} loader"


def _a(name: str) -> str:
    """`name` with its indefinite article, as it is read aloud: an x86_64, an i386, a riscv32."""
    return ("an " if name[:1] in "aeiouAEIOU" or name.startswith(("x", "s390")) else "a ") + name


def _what_elf_file(header: elf.ElfHeader) -> str:
    if header.interpreter is not None:
        return "a dynamically linked program"
    if header.type == elf.ET_EXEC:
        return "a statically linked program"
    if header.type == elf.ET_DYN and header.entry != 0:
        return "a static-pie program"
    if header.type == elf.ET_DYN and header.entry == 0:
        return "a shared library"
    return elf.TYPE_NAMES.get(header.type, f"an ELF file of type {header.type}")


def _loader_configured_for(env: Mapping[bytes, bytes], system: str | None, override: bytes | None) -> bool:
    """True when the user named a loader for this very system: an emulator is their plan."""
    return bool(override) or (system is not None and
                              config.setting(env, config.system_variable(env, b"NIX_LD", system)) is not None)


def _loader_operand(program: bytes) -> bytes:
    # glibc's loader searches its library path for a name without a slash, and takes a
    # leading dash for an option.
    if program.startswith(b"/") or program.startswith(b"./"):
        return program
    return b"./" + program


def _with_variable(entries: tuple[bytes, ...], name: bytes, value: bytes) -> tuple[bytes, ...]:
    """`entries` with every entry for `name` set to `value` (the loader reads the last one,
    getenv the first), or with one added at the end."""
    prefix = name + b"="
    if any(entry.startswith(prefix) for entry in entries):
        return tuple(prefix + value if entry.startswith(prefix) else entry for entry in entries)
    return entries + (prefix + value,)


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # closed or broken: nothing left to lose
            pass


def _exec_failure(executable: bytes, error: OSError) -> LaunchError:
    message = f"cannot execute {display(executable)}: {error.strerror}"
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        return ProgramNotFound(message)
    return NotExecutable(message)


def _fs(value, what: str) -> bytes:
    encoded = os.fsencode(value)
    if b"\0" in encoded:
        raise ValueError(f"embedded null byte in the {what} {encoded!r}")
    return encoded


def library_directories(libs) -> tuple[bytes, ...]:
    """Library directories given as one path or many (None: none), as bytes; empty ones dropped."""
    if libs is None:
        return ()
    if isinstance(libs, (str, bytes, os.PathLike)):
        libs = (libs,)
    return tuple(directory for directory in (_fs(item, "library directory") for item in libs) if directory)


def byte_environment(env: Mapping) -> dict[bytes, bytes]:
    """An environment given with str or bytes, as bytes; raises ValueError for a name
    execve cannot pass (empty, with "=") or a NUL byte."""
    result = {}
    for key, value in env.items():
        key = _fs(key, "environment variable name")
        if not key or b"=" in key:
            raise ValueError(f"illegal environment variable name {key!r}")
        result[key] = _fs(value, f"value of {display(key)}")
    return result


def spawn_foreign(
    path: str | bytes | os.PathLike,
    libs: Iterable[str | bytes | os.PathLike] = (),
    *,
    argv: Iterable[str | bytes | os.PathLike] | None = None,
    env: Mapping[str | bytes, str | bytes] | None = None,
    ld: str | bytes | os.PathLike | None = None,
    **popen_kwargs,
):
    """Start the foreign program as a child; returns a subprocess.Popen.

    `popen_kwargs` go to Popen (stdin, stdout, cwd, ...), except shell, executable and args,
    which the launch decides (TypeError); raises a LaunchError subclass when the program or
    its loader cannot be used or started.
    """
    import subprocess  # start-up time: only the child-process API needs it

    return _start_child(subprocess.Popen, path, libs, argv, env, ld, popen_kwargs)


def run_foreign(
    path: str | bytes | os.PathLike,
    libs: Iterable[str | bytes | os.PathLike] = (),
    *,
    argv: Iterable[str | bytes | os.PathLike] | None = None,
    env: Mapping[str | bytes, str | bytes] | None = None,
    ld: str | bytes | os.PathLike | None = None,
    **run_kwargs,
):
    """Run the foreign program to completion; returns a subprocess.CompletedProcess.

    `run_kwargs` go to subprocess.run (input, capture_output, timeout, check, cwd, ...), except
    shell, executable and args, which the launch decides (TypeError).
    """
    import subprocess  # start-up time: only the child-process API needs it

    return _start_child(subprocess.run, path, libs, argv, env, ld, run_kwargs)


# Keywords of subprocess's that would start something other than the plan: a shell, or
# another executable or argument list than the loader's.
_KEYWORDS_THE_PLAN_DECIDES = ("shell", "executable", "args")


def _start_child(start, path, libs, argv, env, ld, kwargs):
    for keyword in _KEYWORDS_THE_PLAN_DECIDES:
        if keyword in kwargs:
            raise TypeError(f"{keyword}= is not accepted: the launch decides what runs (the loader, "
                            "then the program; give the program's arguments with argv=)")
    plan = plan_launch(path, libs, argv=argv, env=env, ld=ld, cwd=kwargs.get("cwd"))
    report(plan)
    try:
        return start(**popen_arguments(plan), **kwargs)
    except OSError as error:
        # Popen reports the child's failed exec with the executable as the file name;
        # anything else (a bad cwd, no file descriptors left) is subprocess's own error.
        if error.filename is None or os.fsencode(error.filename) != plan.executable:
            raise
        raise _exec_failure(plan.executable, error) from error
