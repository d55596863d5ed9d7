"""`nixld find-libs PROGRAM`: which directories hold the libraries a program is missing."""

from __future__ import annotations

import os
import sys
import time

from nixld.console import argument_parser, write_output
from nixld.errors import display


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

    from nixld.loader import caller_settings, initial_environment, resolve_program

    env = caller_settings(initial_environment())
    program = resolve_program(os.fsencode(options.program), env)
    answer = findlibs.find_libs(program, [os.fsencode(root) for root in options.search], env,
                                use_default_roots=not options.no_default_roots,
                                cache_dir=findlibs.cache_directory(env), refresh=options.refresh,
                                progress=TerminalProgress)
    if options.json:
        import json  # start-up time: only --json prints JSON

        write_output(json.dumps(findlibs.as_json(answer), indent=2) + "\n")
    else:
        write_output(render(answer))
    return 1 if answer.unresolved else 0


class TerminalProgress:
    """A one-line counter on stderr while indexing, when stderr is a terminal."""

    def __init__(self, root: bytes) -> None:
        self.root = display(root)
        self.shown = 0.0
        self.active = sys.stderr is not None and sys.stderr.isatty()

    def update(self, files: int) -> None:
        now = time.monotonic()
        if self.active and now - self.shown > 0.1:
            self.shown = now
            sys.stderr.write(f"\rnixld: indexing {self.root}: {files} files read")
            sys.stderr.flush()

    def done(self) -> None:
        if self.active and self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def render(answer) -> str:
    """The answer for a reader: the value to use, then what was chosen and why, then what is
    still missing."""
    text = os.fsdecode
    lines = []
    if not answer.missing_before:
        lines.append(f"{text(answer.program)}: nothing is missing with the current settings")
    for choice in answer.chosen:
        where = "the program's own tree" if choice.origin == "vendor" else "a search root"
        lines.append(f"{text(choice.directory)}: provides {', '.join(map(text, choice.provides))} ({where})")
    for name, found in answer.candidates.items():
        if len(found) > 1:
            picked = next((choice for choice in answer.chosen if name in choice.provides), None)
            others = [(directory, root) for directory, root in found if picked is None or directory != picked.directory]
            if picked is None:
                reason = "none chosen"
            elif picked.origin == "vendor":
                reason = f"chosen: {text(picked.directory)}, in the program's own tree"
            elif all(root != picked.root for _, root in others):
                # The others are under roots searched later: what comes first wins, whatever its length.
                later = ", ".join(text(root) for root in dict.fromkeys(root for _, root in others))
                reason = f"chosen: {text(picked.directory)}, under {text(picked.root)}, searched before {later}"
            elif len(picked.provides) > 1:
                reason = f"chosen: {text(picked.directory)}, which provides {len(picked.provides)} of the missing"
            else:
                reason = f"chosen: {text(picked.directory)}, the shortest path of those providing as much"
            also = ", ".join(text(directory) for directory, _ in others)
            lines.append(f"{text(name)}: {len(found)} candidates; {reason}; also in {also}")
    for name in answer.unresolved:
        lines.append(f"{text(name)}: not found under {', '.join(map(text, answer.roots)) or 'any root'}"
                     + (f" nor in {text(answer.vendor_tree)}" if answer.vendor_tree else ""))
    lines.append(f"{text(answer.variable)}={text(b':'.join(answer.directories))}")
    return "\n".join(lines) + "\n"
