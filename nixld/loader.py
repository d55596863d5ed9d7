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
from nixld._execve import UNAVAILABLE_REASON, execve
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

# glibc's loader compares its options with strcmp, so each is stored NUL-terminated.
_LIBRARY_PATH_OPTION = b"--library-path"
_ARGV0_OPTION = b"--argv0"

# Python ignores these at start-up; a program it execs would inherit that (`yes | head`
# would print an error instead of dying quietly), so they go back to the default first.
_SIGNALS_PYTHON_IGNORES = ("SIGPIPE", "SIGXFSZ")

_ELF_TYPES = {0: "an ELF file of no type", 1: "an ELF relocatable object", 4: "an ELF core dump"}


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
      (env as (name, value) pairs of bytes).
    - mode: MODE_LIBRARY_PATH, MODE_ENVIRONMENT or MODE_DIRECT; system: the program's Nix
      system (`x86_64_linux`), None for scripts; loader, loader_source: the loader and the
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
) -> LaunchPlan:
    """Plan how to run the program at `path` with the extra library directories `libs`.

    Raises a LaunchError subclass when the program or its loader cannot be used.
    """
    name = _fs(path, "program path")
    argv = (name,) if argv is None else tuple(_fs(item, "argument") for item in argv)
    if not argv:
        raise ValueError("argv must contain at least argv[0]")
    env = os.environb if env is None else _environment(env)
    libs = _directories(libs)
    override = None if ld is None else _fs(ld, "loader path")
    level_index, log_complaint = config.log_level(env)
    decisions = [] if log_complaint is None else [("warn", log_complaint)]

    program = resolve_program(name, env)
    header, file_mode = _read_program(program)
    if header is None:
        decisions.append(("info", f"{display(program)} is a #! script: running it directly"))
        return _direct_plan(program, argv, env, None, config.LOG_LEVELS[level_index], decisions)
    system = header.system
    if not elf.host_runs(header) and not _loader_configured_for(env, system, override):
        variable = f"NIX_LD_{system}" if system else "NIX_LD"
        raise ArchitectureMismatch(
            f"{display(program)} is an {header.machine_name} program and this machine runs "
            f"{elf.host_machine_name()} (to run it under an emulator, set {variable} to an "
            f"{header.machine_name} loader)"
        )
    if header.interpreter is None:
        decisions.append(("info", f"{display(program)} is statically linked: running it directly"))
        return _direct_plan(program, argv, env, system, config.LOG_LEVELS[level_index], decisions)

    loader, loader_source = config.choose_loader(env, system, override)
    loader_options = _loader_options(_check_loader(loader, loader_source, system, program, header))
    nix_dirs, nix_dirs_source = config.nix_ld_library_dirs(env, system)
    library_path = config.library_search_path(
        config.split_ld_library_path(env.get(b"LD_LIBRARY_PATH")), libs, nix_dirs
    )
    joined = b":".join(library_path)

    decisions.append(("info", f"{display(program)}: {header.machine_name} program, interpreter "
                              f"{display(header.interpreter)}"))
    decisions.append(("info", f"loader {display(loader)} ({_describe_source(loader_source, system)})"))
    decisions.append(("info", f"library path {display(joined) or '(empty)'} (LD_LIBRARY_PATH, "
                              f"-L, then {_describe_source(nix_dirs_source, system, 'NIX_LD_LIBRARY_PATH')})"))
    if file_mode & (stat.S_ISUID | stat.S_ISGID):
        decisions.append(("warn", f"{display(program)} is set-user-ID or set-group-ID; started "
                                  "through a loader it runs without those privileges"))

    pairs = tuple(env.items())
    exec_argv = [loader]
    if _LIBRARY_PATH_OPTION in loader_options:
        mode = MODE_LIBRARY_PATH
        exec_argv += [_LIBRARY_PATH_OPTION, joined]
    else:
        mode = MODE_ENVIRONMENT
        pairs = _with_variable(pairs, b"LD_LIBRARY_PATH", joined)
        decisions.append(("warn", f"loader {display(loader)} has no --library-path option: "
                                  "passing the library path in LD_LIBRARY_PATH, which the "
                                  "program's children will inherit"))
    if _ARGV0_OPTION in loader_options:
        exec_argv += [_ARGV0_OPTION, argv[0]]
    elif argv[0] != program:
        decisions.append(("warn", f"loader {display(loader)} has no --argv0 option (glibc "
                                  f"before 2.33): the program sees argv[0] = "
                                  f"{display(program)!r}, not {display(argv[0])!r}"))
    exec_argv += [_loader_operand(program), *argv[1:]]
    decisions.append(("trace", "execve " + " ".join(display(arg) for arg in exec_argv)))
    return LaunchPlan(
        program=program, executable=loader, argv=tuple(exec_argv), env=pairs, mode=mode,
        system=system, loader=loader, loader_source=loader_source, library_path=library_path,
        log_level=config.LOG_LEVELS[level_index], decisions=tuple(decisions),
    )


def resolve_program(name: bytes, env: Mapping[bytes, bytes]) -> bytes:
    """Find `name` as execvp would: as given when it has a slash, else on env's PATH.

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
    not_executable = None
    for directory in search.split(b":"):
        # An empty PATH entry is the current directory; the result always has a slash so
        # that the loader opens it as a path instead of searching its library path.
        candidate = (directory or b".") + b"/" + name
        try:
            mode = os.stat(candidate).st_mode
        except OSError:
            continue
        if not stat.S_ISREG(mode):
            continue
        if os.access(candidate, os.X_OK):
            return candidate
        if not_executable is None:
            not_executable = candidate
    if not_executable is not None:
        return not_executable
    raise ProgramNotFound(f"{display(name)}: command not found on PATH")


def report(plan: LaunchPlan, stream=None) -> None:
    """Write the plan's decisions at or above NIX_LD_LOG's level to `stream` (stderr)."""
    threshold = config.LOG_LEVELS.index(plan.log_level)
    lines = [
        f"nixld: {level}: {message}\n"
        for level, message in plan.decisions
        if config.LOG_LEVELS.index(level) <= threshold
    ]
    if lines:
        stream = sys.stderr if stream is None else stream
        stream.write("".join(lines))
        stream.flush()


def exec_plan(plan: LaunchPlan):
    """Replace this process with the plan's program; returns only by raising a LaunchError."""
    report(plan)
    if UNAVAILABLE_REASON and config.LOG_LEVELS.index(plan.log_level) >= config.LOG_LEVELS.index("debug"):
        sys.stderr.write(f"nixld: debug: {UNAVAILABLE_REASON}\n")
    _flush_stdio()
    import signal  # only here: the direct API callers may never exec

    previous = {}
    for name in _SIGNALS_PYTHON_IGNORES:
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, signal.SIG_DFL)
    try:
        execve(plan.executable, plan.argv, plan.env)
    except OSError as error:
        for number, handler in previous.items():
            signal.signal(number, handler)
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
    """The subprocess.Popen keyword arguments that start the plan as a child process."""
    return {"args": list(plan.argv), "executable": plan.executable, "env": dict(plan.env)}


def _direct_plan(program, argv, env, system, log_level, decisions) -> LaunchPlan:
    return LaunchPlan(
        program=program, executable=program, argv=argv, env=tuple(env.items()),
        mode=MODE_DIRECT, system=system, loader=None, loader_source=None, library_path=(),
        log_level=log_level, decisions=tuple(decisions),
    )


def _read_program(program: bytes) -> tuple[elf.ElfHeader | None, int]:
    """The program's ELF header (None for a #! script) and its file mode; raises for
    everything that cannot be run."""
    shown = display(program)
    try:
        mode = os.stat(program).st_mode
    except FileNotFoundError:
        raise ProgramNotFound(f"{shown}: no such file") from None
    except NotADirectoryError:
        raise ProgramNotFound(f"{shown}: no such file (a component of the path is not a directory)") from None
    except OSError as error:
        raise NotExecutable(f"{shown}: {error.strerror}") from error
    if stat.S_ISDIR(mode):
        raise NotExecutable(f"{shown}: is a directory")
    if not stat.S_ISREG(mode):
        raise NotExecutable(f"{shown}: not a regular file")
    if not os.access(program, os.X_OK):
        raise NotExecutable(f"{shown}: permission denied (not executable: chmod +x it)")
    try:
        header = elf.read_header(program)
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
        kind = _ELF_TYPES.get(header.type, f"an ELF file of type {header.type}")
        raise NotExecutable(f"{shown}: is {kind}, not a program")
    return header, mode


def _check_loader(loader: bytes, source: str, system: str | None, program: bytes,
                  program_header: elf.ElfHeader) -> bytes:
    """Check that `loader` can start the program; return its bytes, to look for options."""
    shown = f"loader {display(loader)} ({_describe_source(source, system)})"
    advice = "set NIX_LD (or pass --ld) to the path of your glibc's ld.so"
    try:
        fd = os.open(loader, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise LoaderError(f"{shown} does not exist: {advice}") from None
    except OSError as error:
        raise LoaderError(f"{shown}: {error.strerror}: {advice}") from error
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise LoaderError(f"{shown} is not a regular file: {advice}")
        try:
            header = elf.read_header_from(fd)
        except elf.ElfError as error:
            raise LoaderError(f"{shown} is not an ELF program loader ({error}): {advice}") from None
        if header.interpreter is not None or header.entry == 0 or header.type not in (elf.ET_EXEC, elf.ET_DYN):
            raise LoaderError(f"{shown} is not an ELF program loader (a loader has an entry point "
                              f"and no interpreter of its own): {advice}")
        if header.abi != program_header.abi:
            raise LoaderError(f"{shown} is an {header.machine_name} loader but "
                              f"{display(program)} is an {program_header.machine_name} program: "
                              f"set NIX_LD_{program_header.system or '{system}'} to an "
                              f"{program_header.machine_name} loader")
        if not os.access(loader, os.X_OK):
            raise LoaderError(f"{shown}: permission denied (not executable)")
        contents = os.pread(fd, status.st_size, 0)
    except OSError as error:
        raise LoaderError(f"{shown}: {error.strerror}") from error
    finally:
        os.close(fd)
    return contents


def _loader_options(contents: bytes) -> set[bytes]:
    return {option for option in (_LIBRARY_PATH_OPTION, _ARGV0_OPTION) if option + b"\0" in contents}


def _loader_configured_for(env: Mapping[bytes, bytes], system: str | None, override: bytes | None) -> bool:
    """True when the user named a loader for this very system: an emulator is their plan."""
    return bool(override) or (system is not None and config.setting(env, f"NIX_LD_{system}".encode()) is not None)


def _describe_source(source: str, system: str | None, generic: str = "NIX_LD") -> str:
    if source == "--ld":
        return "given with --ld"
    if source != "default":
        return f"from {source}"
    unset = f"{generic}_{system} and {generic} are unset" if system else f"{generic} is unset"
    return f"nix-ld's default; {unset}"


def _loader_operand(program: bytes) -> bytes:
    # glibc's loader searches its library path for a name without a slash, and takes a
    # leading dash for an option.
    if program.startswith(b"/") or program.startswith(b"./"):
        return program
    return b"./" + program


def _with_variable(pairs, name: bytes, value: bytes):
    replaced = tuple((key, value if key == name else old) for key, old in pairs)
    if any(key == name for key, _ in pairs):
        return replaced
    return replaced + ((name, value),)


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


def _directories(libs) -> tuple[bytes, ...]:
    if isinstance(libs, (str, bytes, os.PathLike)):
        libs = (libs,)
    return tuple(directory for directory in (_fs(item, "library directory") for item in libs) if directory)


def _environment(env: Mapping) -> dict[bytes, bytes]:
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

    `popen_kwargs` go to Popen (stdin, stdout, cwd, ...); raises a LaunchError subclass
    before anything is started when the program or its loader cannot be used.
    """
    import subprocess  # start-up time: only the child-process API needs it

    plan = plan_launch(path, libs, argv=argv, env=env, ld=ld)
    report(plan)
    return subprocess.Popen(**popen_arguments(plan), **popen_kwargs)


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

    `run_kwargs` go to subprocess.run (input, capture_output, timeout, check, ...).
    """
    import subprocess  # start-up time: only the child-process API needs it

    plan = plan_launch(path, libs, argv=argv, env=env, ld=ld)
    report(plan)
    return subprocess.run(**popen_arguments(plan), **run_kwargs)
