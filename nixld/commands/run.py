"""`nixld run [-L DIR]... [--ld PATH] PROGRAM [ARG]...`: start a foreign program through the
real loader, with the library path on the loader's command line.

Its few options are parsed by hand and nothing heavy is imported, so that the program starts
within a millisecond or two of the interpreter.
"""

from __future__ import annotations

import os

from nixld.console import write_output
from nixld.errors import UsageError

RUN_USAGE = "usage: nixld run [-L DIR]... [--ld PATH] [--argv0 NAME] [--dry-run] [--] PROGRAM [ARG]..."

RUN_HELP = f"""\
{RUN_USAGE}

Run PROGRAM through the real dynamic loader, with the library path on the loader's command
line: neither PROGRAM nor its children see a changed LD_LIBRARY_PATH. A #! script whose
interpreter is a dynamically linked program runs as `nixld run INTERPRETER [ARG] SCRIPT ARG...`
would; a static program, or a script with any other interpreter, runs directly.

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
                              (both _<system> ones are read in nix-ld 1.x's spelling too,
                              NIX_LD_x86_64-linux, when nix-ld 2.x's is not in the environment)
  NIX_LD_LOG                  error, warn (default), info, debug or trace

On NixOS, nixld needs a loader to hand over to: enable nix-ld (programs.nix-ld.enable = true,
which sets NIX_LD and NIX_LD_LIBRARY_PATH), or set NIX_LD to your glibc's ld.so, e.g.
  export NIX_LD=$(cat "$(nix eval --raw nixpkgs#stdenv.cc)/nix-support/dynamic-linker")

exit status: the program's own; 127 when PROGRAM is not found, 126 when it cannot be
executed (or not as asked: -L or --ld for what runs directly), 2 for a usage error, 1 when
--dry-run's plan could not be written.
"""


def main(args: list[str]) -> int:
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
