"""`nixld find-libs PROGRAM`: which directories hold the libraries a program is missing."""

from __future__ import annotations

import os

from nixld.console import argument_parser, write_output
from nixld.errors import UsageError


def main(args: list[str]) -> int:
    from nixld import findlibs

    parser = argument_parser(
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
    if options is None:  # the help was asked for, and shown
        return 0
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
