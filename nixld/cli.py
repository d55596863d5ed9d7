"""The `nixld` command: argument parsing and output only; the work is done elsewhere.

`nixld run` parses its few options by hand and imports nothing heavy, so that the program
starts within a millisecond or two of the interpreter; other commands may use argparse.
"""

from __future__ import annotations

import os
import sys

from nixld import __version__
from nixld.errors import NixLdError, UsageError

USAGE = """\
usage: nixld [--version] [--help] COMMAND [ARG]...

Run unpatched, dynamically linked Linux binaries on NixOS, through the real loader.

commands:
  run      run a foreign program: nixld run [-L DIR]... [--ld PATH] PROGRAM [ARG]...
  inspect  what programs need and where each library resolves, without running them
  demo     show a foreign binary failing, then running through nixld

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
  NIX_LD, NIX_LD_<system>     the real loader, e.g. NIX_LD_x86_64_linux
  NIX_LD_LIBRARY_PATH[_<system>]
                              library directories, separated by ':' or ','
  NIX_LD_LOG                  error, warn (default), info, debug or trace

exit status: the program's own; 127 when PROGRAM is not found, 126 when it cannot be
executed, 2 for a usage error.
"""


def main(argv: list[str] | None = None) -> int:
    """Run the nixld command line; returns the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        if not args:
            raise UsageError("no command given")
        command, rest = args[0], args[1:]
        if command in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        if command in ("-V", "--version"):
            print(f"nixld {__version__}")
            return 0
        if command == "run":
            return _run(rest)
        if command == "inspect":
            return _inspect(rest)
        if command == "demo":
            from nixld.demo import demo

            return demo(rest)
        raise UsageError(f"unknown command {command!r} (commands: run, inspect, demo)")
    except UsageError as error:
        topic = f"nixld {args[0]} --help" if args[:1] in (["run"], ["inspect"]) else "nixld --help"
        sys.stderr.write(f"nixld: {error.message}; see '{topic}'\n")
        return error.exit_status
    except NixLdError as error:
        sys.stderr.write(f"nixld: {error.message}\n")
        return error.exit_status
    except KeyboardInterrupt:
        return 130


def _run(args: list[str]) -> int:
    options = _parse_run(args)
    if options is None:
        sys.stdout.write(RUN_HELP)
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


def _print_plan(plan, caller: dict[bytes, bytes]) -> None:
    """The plan as one JSON object; the environment as its changes from `caller`'s."""
    import json  # start-up time: only --dry-run prints JSON

    def text(value: bytes) -> str:
        return os.fsdecode(value)

    after = dict(plan.env)
    changes = {text(name): text(value) for name, value in after.items() if caller.get(name) != value}
    changes.update({text(name): None for name in caller.keys() if name not in after})
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
    print(json.dumps(document, indent=2))


def _inspect(args: list[str]) -> int:
    import argparse  # start-up time: only the commands other than run use argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):  # one line, nixld's usage status
            raise UsageError(f"inspect: {message}")

    parser = Parser(
        prog="nixld inspect",
        description="Show what each PROGRAM needs and where each library resolves, as the "
                    "loader would resolve it under `nixld run`, without running PROGRAM.",
        epilog="exit status: 0 when every library resolves, 1 when one is missing, 127 when a "
               "PROGRAM is not found, 126 when it is not an ELF file that can be read, 2 for a "
               "usage error.",
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
    from nixld.loader import initial_environment

    env = initial_environment()
    documents, status = [], 0
    for program in options.programs:
        try:
            inspection = inspect(os.fsencode(program), [os.fsencode(d) for d in options.libs],
                                 env=env, ld=None if options.ld is None else os.fsencode(options.ld))
        except NixLdError as error:
            sys.stderr.write(f"nixld: {error.message}\n")
            status = max(status, error.exit_status)
            documents.append({"path": program, "error": error.message, "exit_status": error.exit_status})
            continue
        status = max(status, 1 if inspection.missing else 0)
        if options.json:
            documents.append(inspection.as_json())
        else:
            sys.stdout.write(_tree(inspection) if options.tree else _report(inspection))
    if options.json:
        import json  # start-up time: only --json prints JSON

        print(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2))
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
