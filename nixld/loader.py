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

# glibc's loader compares its options with strcmp, so each is stored NUL-terminated.
_LIBRARY_PATH_OPTION = b"--library-path"
_ARGV0_OPTION = b"--argv0"

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
      (env as (name, value) pairs of bytes).
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

    `argv[0]` is what the program sees (default: `path`); `env` defaults to os.environb;
    `ld` overrides the loader; `cwd` is the directory the program will start in (relative
    paths are taken from there, as subprocess.Popen takes them). Raises a LaunchError
    subclass when the program or its loader cannot be used.
    """
    name = _fs(path, "program path")
    argv = (name,) if argv is None else tuple(_fs(item, "argument") for item in argv)
    if not argv:
        raise ValueError("argv must contain at least argv[0]")
    return plan_command(
        name,
        argv,
        os.environb if env is None else byte_environment(env),
        library_directories(libs),
        None if ld is None else _fs(ld, "loader path"),
        None if cwd is None else _fs(cwd, "working directory"),
    )


def plan_command(
    name: bytes,
    argv: tuple[bytes, ...],
    env: Mapping[bytes, bytes],
    libs: tuple[bytes, ...],
    ld: bytes | None,
    cwd: bytes | None = None,
) -> LaunchPlan:
    """plan_launch for arguments that are already bytes and checked (the command line's)."""
    level_index, log_complaint = config.log_level(env)
    log_level = config.LOG_LEVELS[level_index]
    decisions = [] if log_complaint is None else [("warn", log_complaint)]
    files = _Files(cwd)

    program = resolve_program(name, env, cwd)
    header, file_mode = _read_program(files, program)
    if header is None:
        program, argv, header, file_mode = _script_plan(files, program, argv, decisions)
        if header is None:
            return _direct_plan(program, argv, env, None, log_level, decisions)
    system = header.system
    if not elf.host_runs(header) and not _loader_configured_for(env, system, ld):
        variable = f"NIX_LD_{system}" if system else "NIX_LD"
        raise ArchitectureMismatch(
            f"{display(program)} is an {header.machine_name} program and this machine runs "
            f"{elf.host_machine_name()} (to run it under an emulator, set {variable} to an "
            f"{header.machine_name} loader)"
        )
    if header.interpreter is None:
        decisions.append(("info", f"{display(program)} is statically linked: running it directly"))
        return _direct_plan(program, argv, env, system, log_level, decisions)

    loader, loader_source = config.choose_loader(env, system, ld)
    loader_options = _loader_options(check_loader(loader, loader_source, system, program, header, files))
    nix_dirs, nix_dirs_source = config.nix_ld_library_dirs(env, system)
    library_path = config.library_search_path(
        config.split_ld_library_path(env.get(b"LD_LIBRARY_PATH")), libs, nix_dirs
    )
    joined = b":".join(library_path)
    operand = _loader_operand(program)

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
    elif argv[0] != operand:
        decisions.append(("warn", f"loader {display(loader)} has no --argv0 option (glibc "
                                  f"before 2.33): the program sees argv[0] = "
                                  f"{display(operand)!r}, not {display(argv[0])!r}"))
    exec_argv += [operand, *argv[1:]]
    decisions.append(("trace", "execve " + " ".join(display(arg) for arg in exec_argv)))
    return LaunchPlan(
        program=program, executable=loader, argv=tuple(exec_argv), env=pairs, mode=mode,
        system=system, loader=loader, loader_source=loader_source, library_path=library_path,
        log_level=log_level, decisions=tuple(decisions),
    )


def initial_environment() -> dict[bytes, bytes]:
    """The environment this process was started with: its caller's, exactly.

    os.environb is not quite that: CPython may add LC_CTYPE at start-up (PEP 538's locale
    coercion), and a program that nixld starts for its own caller must not see it. Where
    /proc is not mounted, os.environb is the best there is.
    """
    try:
        with open("/proc/self/environ", "rb") as stream:
            block = stream.read()
    except OSError:
        return dict(os.environb)
    # Entries without a name (or without "=") cannot be passed on as variables; Python drops them too.
    return dict(entry.split(b"=", 1) for entry in block.split(b"\0") if entry.find(b"=") > 0)


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
    if config.LOG_LEVELS.index(plan.log_level) >= config.LOG_LEVELS.index("debug"):
        reason = c_core_unavailable()
        if reason:
            sys.stderr.write(f"nixld: debug: {reason}\n")
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
    """The subprocess.Popen keyword arguments that start the plan as a child process."""
    return {"args": list(plan.argv), "executable": plan.executable, "env": dict(plan.env)}


def _direct_plan(program, argv, env, system, log_level, decisions) -> LaunchPlan:
    return LaunchPlan(
        program=program, executable=program, argv=argv, env=tuple(env.items()),
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


def _script_plan(files: _Files, script: bytes, argv: tuple[bytes, ...], decisions: list):
    """(program, argv, header, mode) for a #! script: the script itself, run directly (header
    None), unless its interpreter is a foreign program, which the loader then starts as the
    kernel would have started it: INTERPRETER [ARGUMENT] SCRIPT ARGS..."""
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
    try:
        header, mode = _read_program(files, interpreter)
    except ProgramNotFound:
        raise ProgramNotFound(f"{shown}: its #! interpreter {display(interpreter)} does not exist") from None
    except LaunchError:
        header = None  # the kernel will say what is wrong with it
    if header is None or header.interpreter is None or os.path.exists(header.interpreter):
        decisions.append(("info", f"{shown} is a #! script: running it directly"))
        return script, argv, None, 0
    decisions.append(("info", f"{shown} is a #! script whose interpreter {display(interpreter)} "
                              "is a foreign program: starting the interpreter through the loader"))
    script_argv = (interpreter, *((argument,) if argument else ()), script, *argv[1:])
    return interpreter, script_argv, header, mode


def check_loader(loader: bytes, source: str, system: str | None, program: bytes,
                 program_header: elf.ElfHeader, files: _Files | None = None) -> bytes:
    """Check that `loader` (chosen from `source`) can start the program; return its bytes,
    to look for options. Raises LoaderError naming the loader and what to do."""
    files = files or _Files(None)
    shown = f"loader {display(loader)} ({_describe_source(source, system)})"
    advice = "set NIX_LD (or pass --ld) to the path of your glibc's ld.so"
    try:
        fd = os.open(files.at(loader), os.O_RDONLY | os.O_CLOEXEC)
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
        if not os.access(files.at(loader), os.X_OK):
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


def library_directories(libs) -> tuple[bytes, ...]:
    """Library directories given as one path or many, as bytes; empty ones dropped."""
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

    `popen_kwargs` go to Popen (stdin, stdout, cwd, ...); raises a LaunchError subclass
    when the program or its loader cannot be used or started.
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

    `run_kwargs` go to subprocess.run (input, capture_output, timeout, check, cwd, ...).
    """
    import subprocess  # start-up time: only the child-process API needs it

    return _start_child(subprocess.run, path, libs, argv, env, ld, run_kwargs)


def _start_child(start, path, libs, argv, env, ld, kwargs):
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
