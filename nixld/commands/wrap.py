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
    if options is None:  # the help was asked for, and shown
        return 0
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
