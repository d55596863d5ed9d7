"""`nixld wrap PROGRAM`: write a file that starts a foreign program as `nixld run` would, for good."""

from __future__ import annotations

import os

from nixld.console import argument_parser, write_error, write_output
from nixld.errors import UsageError


def main(args: list[str]) -> int:
    from nixld import wrap

    parser = argument_parser(
        "wrap",
        description="Write OUT, a file that starts PROGRAM for good, with the loader and the library "
                    "directories that `nixld run [-L DIR]... [--ld PATH] PROGRAM` would use, decided now "
                    "(relative paths are read from here and written absolute). "
                    "sh and binary start `LOADER --library-path DIRS --argv0 ARGV0 PROGRAM ARGS...` "
                    "(the caller's LD_LIBRARY_PATH first, as with nixld run) with no Python at run time; "
                    "nix and envrc set NIX_LD and NIX_LD_LIBRARY_PATH for nix-ld or nixld's shim. "
                    "With --in-place, PROGRAM moves to .NAME-wrapped beside it and the wrapper takes its "
                    "place, as nixpkgs' wrapProgram does; --undo puts it back.",
        epilog="formats: sh, a POSIX sh script that only execs the loader; binary, a copy of nixld's "
               "compiled launcher; nix, a writeShellScriptBin expression (OUT defaults to PROGRAM.nix); "
               "envrc, lines for direnv (OUT defaults to .envrc). An existing directory as OUT means "
               "OUT/NAME, as with cp. "
               "exit status: 0; 1 when OUT cannot be written (or exists, without --force), or PROGRAM is "
               "wrapped already (--in-place) or cannot be put back (--undo); 126 or 127 when `nixld run` "
               "would refuse PROGRAM; 2 for a usage error.",
    )
    parser.add_argument("program", metavar="PROGRAM", help="the foreign program (a bare name is found on PATH)")
    parser.add_argument("-L", "--library-path", dest="libs", metavar="DIR", action="append", default=[],
                        help="also search DIR (after LD_LIBRARY_PATH, before the NIX_LD directories); repeatable")
    parser.add_argument("--ld", metavar="PATH", help="the loader (default: as `nixld run` chooses it now)")
    parser.add_argument("--argv0", metavar="NAME", help="the program's argv[0] (default: the wrapper's own)")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="where to write (default: PROGRAM's name, here; in OUT when it is a directory)")
    parser.add_argument("--format", choices=wrap.FORMATS, help="what to write (default: sh)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--in-place", action="store_true",
                        help="move PROGRAM to .NAME-wrapped beside it and write the wrapper (sh or binary) "
                             "in its place")
    parser.add_argument("--undo", action="store_true",
                        help="put back a PROGRAM wrapped in place, removing its wrapper")
    options = parser.parse_args(args)
    if options is None:  # the help was asked for, and shown
        return 0
    program = os.fsencode(options.program)
    if options.undo:
        given = [name for name, value in (("-L", options.libs), ("--ld", options.ld), ("--argv0", options.argv0),
                                          ("-o", options.output), ("--format", options.format),
                                          ("--force", options.force), ("--in-place", options.in_place))
                 if value not in (None, False, [])]
        if given:
            raise UsageError(f"wrap: --undo takes PROGRAM alone, not {', '.join(given)}")
        program, wrapped = wrap.undo_in_place(program)
        write_output(f"{os.fsdecode(program)}: the program is back, from {os.fsdecode(wrapped)}; its wrapper "
                     "is gone\n")
        return 0
    fmt = options.format or "sh"
    libs = tuple(os.fsencode(directory) for directory in options.libs)
    ld = None if options.ld is None else os.fsencode(options.ld)
    argv0 = None if options.argv0 is None else os.fsencode(options.argv0)
    if options.in_place:
        if options.output is not None or options.force:
            raise UsageError("wrap: --in-place writes the wrapper at PROGRAM itself: it takes no -o or --force")
        if fmt not in wrap.IN_PLACE_FORMATS:
            raise UsageError(f"wrap: --in-place writes a sh or binary wrapper; --format {fmt} cannot take "
                             "PROGRAM's place")
        output, settings, warning = wrap.wrap_in_place(program, libs=libs, ld=ld, argv0=argv0, fmt=fmt)
    else:
        output, settings, warning = wrap.wrap(
            program, output=None if options.output is None else os.fsencode(options.output), libs=libs, ld=ld,
            argv0=argv0, fmt=fmt, force=options.force)
    write_output(summary(fmt, output, settings, options.in_place) + "\n")
    if warning is not None:
        write_error(f"warn: {warning}")  # worded as `nixld run` words its warnings
    return 0


def summary(fmt: str, output: bytes, settings, in_place: bool) -> str:
    """What the wrapper at `output` does, in one line: sh and binary start the program through
    the loader; nix and envrc only set the variables that nix-ld or nixld's shim read."""
    from nixld import wrap

    out, program, loader = (os.fsdecode(path) for path in (output, settings.program, settings.loader))
    joined = os.fsdecode(b":".join(settings.directories))
    if fmt == "nix":
        return (f"{out}: a command {os.fsdecode(wrap.nix_command_name(settings.program))} that sets "
                f"NIX_LD={loader} and NIX_LD_LIBRARY_PATH={joined} and starts {program}, for nix-ld or nixld's "
                "shim at its interpreter path to hand to that loader")
    if fmt == "envrc":
        return (f"{out}: sets NIX_LD={loader} and NIX_LD_LIBRARY_PATH={joined}, for nix-ld or nixld's shim at "
                f"the interpreter path of {program} to hand it to that loader")
    started = f"{out}: starts {program} through {loader} with library path {joined or '(none)'}"
    if in_place:
        import shlex  # start-up time: only an in-place wrap says how to undo it

        return f"{started} (moved aside: `nixld wrap --undo {shlex.quote(out)}` puts it back)"
    return started
