"""The `nixld` command: argument parsing and output only; the work is done elsewhere.

`nixld run` parses its few options by hand and imports nothing heavy, so that the program
starts within a millisecond or two of the interpreter; other commands may use argparse.
"""

from __future__ import annotations

import errno
import os
import sys

from nixld import __version__
from nixld.errors import NixLdError, OutputError, UsageError

USAGE = """\
usage: nixld [--version] [--help] COMMAND [ARG]...

Run unpatched, dynamically linked Linux binaries on NixOS, through the real loader.

commands:
  run        run a foreign program: nixld run [-L DIR]... [--ld PATH] PROGRAM [ARG]...
  inspect    what programs need and where each library resolves, without running them
  find-libs  which directories hold the libraries a program is missing
  wrap       write a file that starts a foreign program as `nixld run` would, for good
  doctor     what the setup is, what would go wrong, and how to fix it
  shim       where nixld's shim is: a program interpreter that starts foreign programs directly
  demo       show a foreign binary failing, then running through nixld

'nixld COMMAND --help' tells more about a command.
"""

RUN_USAGE = "usage: nixld run [-L DIR]... [--ld PATH] [--argv0 NAME] [--dry-run] [--] PROGRAM [ARG]..."

RUN_HELP = f"""\
{RUN_USAGE}

Run PROGRAM through the real dynamic loader, with the library path on the loader's command
line: neither PROGRAM nor its children see a changed LD_LIBRARY_PATH.

options:
  -L DIR, --library-path DIR  also search DIR for libraries (after LD_LIBRARY_PATH's
                              directories, before NIX_LD_LIBRARY_PATH's); repeatable
  --ld PATH                   the loader to use (default: NIX_LD_<system>, then NIX_LD)
  --argv0 NAME                the program's argv[0] (default: PROGRAM as given)
  --dry-run                   print the launch plan as JSON and run nothing

environment:
  NIX_LD, NIX_LD_<system>     the real loader, e.g. NIX_LD_x86_64_linux; unset, nix-ld's
                              default /run/current-system/sw/share/nix-ld/lib/ld.so, then
                              PROGRAM's own interpreter if it exists
  NIX_LD_LIBRARY_PATH[_<system>]
                              library directories, separated by ':' or ','
  NIX_LD_LOG                  error, warn (default), info, debug or trace

On NixOS, nixld needs a loader to hand over to: enable nix-ld (programs.nix-ld.enable = true,
which sets NIX_LD and NIX_LD_LIBRARY_PATH), or set NIX_LD to your glibc's ld.so, e.g.
  export NIX_LD=$(cat "$(nix eval --raw nixpkgs#stdenv.cc)/nix-support/dynamic-linker")

exit status: the program's own; 127 when PROGRAM is not found, 126 when it cannot be
executed, 2 for a usage error, 1 when --dry-run's plan could not be written.
"""


def main(argv: list[str] | None = None) -> int:
    """Run the nixld command line; returns the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        if not args:
            raise UsageError("no command given")
        command, rest = args[0], args[1:]
        if command in ("-h", "--help"):
            write_output(USAGE)
            return 0
        if command in ("-V", "--version"):
            write_output(f"nixld {__version__}\n")
            return 0
        if command == "run":
            return _run(rest)
        if command == "inspect":
            return _inspect(rest)
        if command == "shim":
            return _shim(rest)
        if command == "wrap":
            return _wrap(rest)
        if command == "find-libs":
            return _find_libs(rest)
        if command == "doctor":
            from nixld.doctor import main as doctor

            return doctor(rest)
        if command == "demo":
            from nixld.demo import demo

            return demo(rest)
        raise UsageError(f"unknown command {command!r} (commands: run, inspect, find-libs, wrap, doctor, shim, demo)")
    except _ReaderGone:
        return _READER_GONE_STATUS
    except UsageError as error:
        topic = (f"nixld {args[0]} --help" if args[:1] in (["run"], ["inspect"], ["find-libs"], ["wrap"], ["doctor"],
                                                           ["shim"]) else "nixld --help")
        write_error(f"{error.message}; see '{topic}'")
        return error.exit_status
    except NixLdError as error:
        write_error(error.message)
        return error.exit_status
    except KeyboardInterrupt:
        return 130
    finally:
        # The demo's launch report may have left lines that a failing stderr refused.
        _settle_stderr()


# What a shell shows for a program that SIGPIPE killed (128 + 13, SIGPIPE's number on every
# Linux architecture): how `nixld inspect | head` ends, as `ls | head` does. main() returns it
# rather than dying of the signal: main() is also called in-process (by tests, by Python code),
# where the signal would kill the caller, and the `nixld` console script is only
# `sys.exit(main())`, so no code of nixld's runs only as a command. `$?` and `set -o pipefail`
# show 141 either way; only a parent that asks waitpid() how its child ended can tell the two
# apart (subprocess: returncode 141 rather than -13).
_READER_GONE_STATUS = 128 + 13


class _ReaderGone(Exception):
    """stdout is a pipe whose reader has left: the end of the output, not an error to report."""


def write_output(text: str) -> None:
    """Write `text` to stdout now; raises OutputError when it cannot be written, _ReaderGone
    when nobody reads it any more."""
    stream = sys.stdout
    if stream is None:  # how Python shows a descriptor 1 that was closed when it started
        raise OutputError("cannot write the output: standard output is closed")
    try:
        buffer = getattr(stream, "buffer", None)
        if buffer is None:  # text only, as with a caller's redirect_stdout(io.StringIO())
            stream.write(text)
            stream.flush()
            return
        stream.flush()  # what others wrote through the text layer goes first
        data = memoryview(text.encode(stream.encoding, stream.errors))
        while data:
            # Unbuffered (python -u, PYTHONUNBUFFERED), the buffer is the file itself, which may
            # take only part: a pipe whose reader has just left takes what fitted and fails on
            # the next write. stream.write would drop the rest without a word.
            written = buffer.write(data)
            if written is None:  # non-blocking, and full
                raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
            data = data[written:]
        # Now rather than at exit, where a failure is only "Exception ignored" and status 120.
        buffer.flush()
    except OSError as error:
        _discard_output(stream)
        if isinstance(error, BrokenPipeError):
            raise _ReaderGone from error
        raise OutputError(f"cannot write the output: {error.strerror or error}") from error


def write_error(message: str) -> None:
    """Write `nixld: message` to stderr. A closed or failing stderr loses the message and
    nothing more: the exit status still tells what went wrong."""
    try:
        if sys.stderr is not None:  # None: fd 2 was closed when Python started
            sys.stderr.write(f"nixld: {message}\n")
    except (OSError, ValueError):  # ValueError: a stream closed by its owner, in this process
        pass
    _settle_stderr()


def _settle_stderr() -> None:
    """Flush stderr now, or send it to /dev/null if it fails: Python flushes it again at exit,
    and a failure there makes the exit status 120, whatever main() returned."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.flush()
    except (OSError, ValueError):
        _discard_output(stream)


def _discard_output(stream) -> None:
    """Point the stream's descriptor at /dev/null, as the Python docs advise after EPIPE:
    Python flushes the stream again at exit, and a second failure there would print
    "Exception ignored ..." and make the exit status 120."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):  # no descriptor behind it (a test's stand-in), or none left
        pass


def _run(args: list[str]) -> int:
    options = _parse_run(args)
    if options is None:
        write_output(RUN_HELP)
        return 0
    libs, ld, argv0, dry_run, command = options
    from nixld.loader import exec_plan, initial_environment, plan_command

    command = [os.fsencode(arg) for arg in command]
    argv = (os.fsencode(argv0) if argv0 else command[0], *command[1:])
    env = initial_environment()
    plan = plan_command(command[0], argv, env, tuple(map(os.fsencode, libs)), ld and os.fsencode(ld))
    if dry_run:
        _print_plan(plan, env)
        return 0
    exec_plan(plan)
    return 0  # not reached: exec_plan returns only by raising


def _parse_run(args: list[str]):
    """(libs, ld, argv0, dry_run, [PROGRAM, ARG...]), or None when help was asked for."""
    libs: list[str] = []
    ld = argv0 = None
    dry_run = False
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            index += 1
            break
        if arg in ("-h", "--help"):
            return None
        if arg == "--dry-run":
            dry_run = True
        elif arg in ("-L", "--library-path", "--ld", "--argv0") or arg.startswith(
            ("-L", "--library-path=", "--ld=", "--argv0=")
        ):
            name, value, index = _option_value(args, index)
            if name == "--ld":
                ld = value
            elif name == "--argv0":
                argv0 = value
            else:
                libs.append(value)
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"run: unknown option {arg!r}")
        else:
            break
        index += 1
    command = args[index:]
    if not command:
        raise UsageError("run: no PROGRAM given")
    return libs, ld, argv0, dry_run, command


def _option_value(args: list[str], index: int) -> tuple[str, str, int]:
    """The option at args[index], its value (attached or the next argument), and the index
    of the last argument consumed."""
    arg = args[index]
    if arg.startswith("--") and "=" in arg:
        name, value = arg.split("=", 1)
    elif arg.startswith("-L") and len(arg) > 2:
        name, value = "-L", arg[2:]
    elif index + 1 < len(args):
        name, value, index = arg, args[index + 1], index + 1
    else:
        raise UsageError(f"run: {arg} needs a value")
    if not value:
        raise UsageError(f"run: {name} needs a non-empty value")
    return name, value, index


def _print_plan(plan, caller: tuple[bytes, ...]) -> None:
    """The plan as one JSON object; the environment as its changes from `caller`'s block, as
    getenv() would see them."""
    import json  # start-up time: only --dry-run prints JSON

    def text(value: bytes) -> str:
        return os.fsdecode(value)

    from nixld.loader import environment_lookup

    before, after = environment_lookup(caller), environment_lookup(plan.env)
    changes = {text(name): text(value) for name, value in after.items() if before.get(name) != value}
    changes.update({text(name): None for name in before if name not in after})
    document = {
        "program": text(plan.program),
        "mode": plan.mode,
        "system": plan.system,
        "executable": text(plan.executable),
        "argv": [text(arg) for arg in plan.argv],
        "loader": None if plan.loader is None else text(plan.loader),
        "loader_source": plan.loader_source,
        "library_path": [text(directory) for directory in plan.library_path],
        "env_changes": changes,
        "log_level": plan.log_level,
        "decisions": [{"level": level, "message": message} for level, message in plan.decisions],
    }
    write_output(json.dumps(document, indent=2) + "\n")


def _argument_parser(command: str, **options):
    """An argparse parser for `nixld COMMAND` whose errors are nixld's one-line usage errors."""
    import argparse  # start-up time: only the commands other than run use argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):  # one line, nixld's usage status
            raise UsageError(f"{command}: {message}")

        def print_help(self, file=None):  # argparse drops write errors, or falls back to stderr
            write_output(self.format_help())

    return Parser(prog=f"nixld {command}", **options)


def _shim(args: list[str]) -> int:
    from nixld import shims

    parser = _argument_parser(
        "shim",
        description="nixld's shim is a program interpreter, built at install time: put it where a "
                    "foreign program's interpreter is expected (/lib64/ld-linux-x86-64.so.2, as "
                    "nix-ld's is) or link a program with -Wl,--dynamic-linker=PATH, and the program "
                    "starts directly through the loader NIX_LD names, with its environment untouched.",
        epilog="exit status: 0, 1 when this installation has no shim for SYSTEM, 2 for a usage error.",
    )
    parser.add_argument("--path", action="store_true", required=True, help="print the shim's path")
    parser.add_argument("--system", metavar="SYSTEM", choices=shims.SHIM_SYSTEMS,
                        help=f"for programs of SYSTEM ({', '.join(shims.SHIM_SYSTEMS)}; default: this machine's)")
    options = parser.parse_args(args)
    write_output(shims.shim_path(options.system) + "\n")
    return 0


def _wrap(args: list[str]) -> int:
    from nixld import wrap

    parser = _argument_parser(
        "wrap",
        description="Write OUT, a file that starts PROGRAM for good, with the loader and the library "
                    "directories that `nixld run [-L DIR]... [--ld PATH] PROGRAM` would use, decided now. "
                    "sh and binary start `LOADER --library-path DIRS --argv0 ARGV0 PROGRAM ARGS...` "
                    "(the caller's LD_LIBRARY_PATH first, as with nixld run) with no Python at run time; "
                    "nix and envrc set NIX_LD and NIX_LD_LIBRARY_PATH for nix-ld or nixld's shim.",
        epilog="formats: sh, a POSIX sh script that only execs the loader; binary, a copy of nixld's "
               "compiled launcher; nix, a writeShellScriptBin expression (OUT defaults to PROGRAM.nix); "
               "envrc, lines for direnv (OUT defaults to .envrc). "
               "exit status: 0; 1 when OUT cannot be written (or exists, without --force); 126 or 127 "
               "when `nixld run` would refuse PROGRAM; 2 for a usage error.",
    )
    parser.add_argument("program", metavar="PROGRAM", help="the foreign program (a bare name is found on PATH)")
    parser.add_argument("-L", "--library-path", dest="libs", metavar="DIR", action="append", default=[],
                        help="also search DIR (after LD_LIBRARY_PATH, before the NIX_LD directories); repeatable")
    parser.add_argument("--ld", metavar="PATH", help="the loader (default: as `nixld run` chooses it now)")
    parser.add_argument("--argv0", metavar="NAME", help="the program's argv[0] (default: the wrapper's own)")
    parser.add_argument("-o", "--output", metavar="OUT", help="where to write (default: PROGRAM's name, here)")
    parser.add_argument("--format", default="sh", choices=wrap.FORMATS, help="what to write (default: sh)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    options = parser.parse_args(args)
    if options.ld == "" or "" in options.libs or options.output == "":
        raise UsageError("wrap: --ld, -L and -o need a non-empty value")
    output, settings, warning = wrap.wrap(
        os.fsencode(options.program), None if options.output is None else os.fsencode(options.output),
        tuple(os.fsencode(d) for d in options.libs), None if options.ld is None else os.fsencode(options.ld),
        None if options.argv0 is None else os.fsencode(options.argv0), options.format, options.force)
    directories = os.fsdecode(b":".join(settings.directories)) or "(none)"
    write_output(f"{os.fsdecode(output)}: starts {os.fsdecode(settings.program)} through "
                 f"{os.fsdecode(settings.loader)} with library path {directories}\n")
    if warning is not None:
        write_error(f"warn: {warning}")  # worded as `nixld run` words its warnings
    return 0


def _find_libs(args: list[str]) -> int:
    from nixld import findlibs

    parser = _argument_parser(
        "find-libs",
        description="Find directories that hold the shared libraries PROGRAM is missing under the current "
                    "NIX_LD settings: first in PROGRAM's own tree (where vendors ship theirs), then under "
                    "each --search ROOT in the order given, then under /nix/store when it exists and the "
                    "NIX_LD library directories, following what each found library needs in turn; print the "
                    "NIX_LD_LIBRARY_PATH value to use. The index of each root is cached under "
                    "$XDG_CACHE_HOME/nixld/ and read again only where a directory changed.",
        epilog="exit status: 0 when nothing is left missing, 1 when something is (or the output could not be "
               "written), 127 or 126 when PROGRAM cannot be read, 2 for a usage error.",
    )
    parser.add_argument("program", metavar="PROGRAM", help="the foreign program")
    parser.add_argument("--search", metavar="ROOT", action="append", default=[],
                        help="also look under ROOT; repeatable")
    parser.add_argument("--no-default-roots", action="store_true",
                        help="look only in PROGRAM's tree and the --search roots")
    parser.add_argument("--refresh", action="store_true", help="read every root again, ignoring the cache")
    parser.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    options = parser.parse_args(args)
    if "" in options.search:
        raise UsageError("find-libs: --search needs a non-empty value")

    from nixld.loader import caller_settings, initial_environment, resolve_program

    env = caller_settings(initial_environment())
    program = resolve_program(os.fsencode(options.program), env)
    answer = findlibs.find_libs(program, [os.fsencode(root) for root in options.search], env,
                                use_default_roots=not options.no_default_roots,
                                cache_dir=findlibs.cache_directory(env), refresh=options.refresh)
    if options.json:
        import json  # start-up time: only --json prints JSON

        write_output(json.dumps(findlibs.as_json(answer), indent=2) + "\n")
    else:
        write_output(findlibs.report(answer))
    return 1 if answer.unresolved else 0


def _inspect(args: list[str]) -> int:
    parser = _argument_parser(
        "inspect",
        description="Show what each PROGRAM needs and where each library resolves, as the "
                    "loader would resolve it under `nixld run`, without running PROGRAM.",
        epilog="exit status: 0 when every library resolves, 1 when one is missing or the output "
               "could not be written, 127 when a PROGRAM is not found, 126 when it is not an ELF "
               "file that can be read, 2 for a usage error.",
    )
    parser.add_argument("programs", metavar="PROGRAM", nargs="+", help="a program or shared library")
    parser.add_argument("-L", "--library-path", dest="libs", metavar="DIR", action="append", default=[],
                        help="also search DIR, as `nixld run -L DIR` would; repeatable")
    parser.add_argument("--ld", metavar="PATH", help="the loader (default: NIX_LD_<system>, then NIX_LD)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON object per program (a list for several)")
    output.add_argument("--tree", action="store_true", help="show who needs whom, like lddtree")
    options = parser.parse_args(args)
    if options.ld == "" or "" in options.libs:
        raise UsageError("inspect: --ld and -L need a non-empty value")

    from nixld import inspect
    from nixld.loader import caller_settings, initial_environment

    env = caller_settings(initial_environment())
    documents, status = [], 0
    for program in options.programs:
        try:
            inspection = inspect(os.fsencode(program), [os.fsencode(d) for d in options.libs],
                                 env=env, ld=None if options.ld is None else os.fsencode(options.ld))
        except NixLdError as error:
            write_error(error.message)
            status = max(status, error.exit_status)
            documents.append({"path": program, "error": error.message, "exit_status": error.exit_status})
            continue
        status = max(status, 1 if inspection.missing else 0)
        if options.json:
            documents.append(inspection.as_json())
        else:
            write_output(_tree(inspection) if options.tree else _report(inspection))
    if options.json:
        import json  # start-up time: only --json prints JSON

        write_output(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2) + "\n")
    return status


def _report(inspection) -> str:
    """A readable report of one inspection."""
    text = os.fsdecode
    lines = [text(inspection.path)]
    kind = inspection.type + (" (PIE)" if inspection.pie else "") + (", static" if inspection.static else "")
    lines.append(f"  ELF {inspection.elf_class}-bit {inspection.machine} "
                 f"({inspection.system or 'no Nix system'}), {kind}, entry {inspection.entry:#x}")
    if inspection.interpreter is not None:
        state = "exists" if inspection.interpreter_exists else "missing: `nixld run` uses the loader below"
        lines.append(f"  interpreter  {text(inspection.interpreter)} ({state})")
    loader = inspection.loader
    source = {"--ld": "given with --ld", "default": "nix-ld's default"}.get(loader.source, f"from {loader.source}")
    lines.append(f"  loader       {text(loader.path)} ({source}{'' if loader.exists else ', missing'})")
    lines.append(f"  search path  {text(b':'.join(inspection.search_path)) or '(empty)'}"
                 "  (LD_LIBRARY_PATH, -L, NIX_LD_LIBRARY_PATH)")
    for name, entries in (("rpath", inspection.rpath), ("runpath", inspection.runpath)):
        if entries:
            lines.append(f"  {name:11}  {text(b':'.join(entries))}")
    if inspection.libraries:
        found = sum(1 for library in inspection.libraries if library.path is not None)
        lines.append(f"  libraries    {found} of {len(inspection.libraries)} found")
        width = max(len(text(library.soname)) for library in inspection.libraries)
        for library in inspection.libraries:
            if library.path is None:
                needed_by = ", ".join(text(path) for path in library.needed_by)
                lines.append(f"    {text(library.soname):{width}}  not found (needed by {needed_by})")
            else:
                lines.append(f"    {text(library.soname):{width}}  {text(library.path)} ({library.via})")
    lines.extend(f"  warning: {warning}" for warning in inspection.warnings)
    return "\n".join(lines) + "\n\n"


def _tree(inspection) -> str:
    """Who needs whom, each library's own needs shown where it first appears."""
    text = os.fsdecode
    head = text(inspection.path)
    if inspection.interpreter is not None:
        head += f" (interpreter => {text(inspection.loader.path)})"
    lines = [head]
    expanded: set[int] = set()

    def walk(indexes, depth):
        for index in indexes:
            library = inspection.libraries[index]
            target = "not found" if library.path is None else text(library.path)
            lines.append(f"{'    ' * depth}{text(library.soname)} => {target}")
            if index not in expanded:
                expanded.add(index)
                walk(library.needs, depth + 1)

    walk(inspection.needs, 1)
    lines.extend(f"warning: {warning}" for warning in inspection.warnings)
    return "\n".join(lines) + "\n"
