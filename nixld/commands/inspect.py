"""`nixld inspect PROGRAM...`: what programs need and where each library resolves, without
running them."""

from __future__ import annotations

import os

from nixld import config
from nixld.console import argument_parser, write_error, write_output
from nixld.errors import NixLdError


def main(args: list[str]) -> int:
    parser = argument_parser(
        "inspect",
        description="Show what each PROGRAM needs and where each library resolves, as the "
                    "loader would resolve it under `nixld run`, without running PROGRAM.",
        epilog="exit status: 0 when every library resolves, 1 when one is missing or the output "
               "could not be written, 127 when a PROGRAM is not found, 126 when it is not an ELF "
               "file that can be read or when `nixld run` would refuse to start it (its loader is "
               "missing or unusable, or it is another machine's program and no loader is named for "
               "its system; the report is still given), 2 for a usage error.",
    )
    parser.add_argument("programs", metavar="PROGRAM", nargs="+", help="a program or shared library")
    parser.add_argument("-L", "--library-path", dest="libs", metavar="DIR", action="append", default=[],
                        help="also search DIR, as `nixld run -L DIR` would; repeatable")
    parser.add_argument("--ld", metavar="PATH", help="the loader (default: NIX_LD_<system>, then NIX_LD)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON object per program (a list for several)")
    output.add_argument("--tree", action="store_true", help="show who needs whom, like lddtree")
    options = parser.parse_args(args)
    if options is None:  # the help was asked for, and shown
        return 0

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
        if inspection.run_error is not None:
            write_error(inspection.run_error)  # what `nixld run` would end with; the report follows
        status = max(status, inspection.exit_status)
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
    source = config.source_phrase(loader.source)
    lines.append(f"  loader       {text(loader.path)} ({source}{'' if loader.exists else ', missing'})")
    if inspection.run_error is not None:
        lines.append(f"  nixld run    refuses it (exit status {inspection.run_status}): {inspection.run_error}")
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
    lines.extend(f"  warning: {warning}" for warning in inspection.warnings if warning != inspection.run_error)
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
