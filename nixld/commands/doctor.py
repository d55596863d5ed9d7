"""`nixld doctor [--json] [--python PYTHON] [PROGRAM]`: the report `nixld.doctor` gathers,
rendered as text."""

from __future__ import annotations

import os

from nixld import config, doctor
from nixld.doctor.facts import STARTS_DIRECTLY, machine_of
from nixld.doctor.findings import PROBLEM
from nixld.console import argument_parser, write_output
from nixld.loader import caller_settings, initial_environment


def main(args: list[str]) -> int:
    """`nixld doctor [--json] [PROGRAM]`: 0 when a launch would work, 1 otherwise; raises
    UsageError (2), ProgramNotFound (127) or NotExecutable (126)."""
    parser = argument_parser(
        "doctor",
        description="Explain the setup nixld runs programs with (the loader each system gets and "
                    "the variable that chose it, the library directories, what is at the well-known "
                    "interpreter paths and whether nixld's shim is there) and, with PROGRAM, whether "
                    "it would start and what is known to go wrong with it. Each problem comes with "
                    "the setting to change.",
        epilog="exit status: 0 when a launch would work (without PROGRAM: when a foreign program of "
               "this machine's would start), 1 when something must be fixed first (or the output "
               "could not be written), 127 when PROGRAM is not found, 126 when it is not an ELF "
               "file that can be read, 2 for a usage error.",
    )
    parser.add_argument("program", metavar="PROGRAM", nargs="?",
                        help="a program to check too (a bare name is found on PATH)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--python", metavar="PYTHON",
                        help="also say which of PYTHON's extension modules (and the libraries in its site-packages) "
                             "its loader would not load, and where nixld's Python hook would find what they need")
    options = parser.parse_args(args)
    if options is None:  # the help was asked for, and shown
        return 0

    env = caller_settings(initial_environment())
    report = doctor.diagnose(env, None if options.program is None else os.fsencode(options.program),
                             python=None if options.python is None else os.fsencode(options.python))
    if options.json:
        import json  # start-up time: only --json prints JSON

        write_output(json.dumps(report, indent=2) + "\n")
    else:
        write_output(render(report))
    return 0 if report["ok"] else 1


def render(report: dict) -> str:
    """The report as text: the sections Loader, Library directories, Interpreter paths and,
    with a PROGRAM, Program; then every finding, one line each with its fix, and the verdict."""
    host = report["host"]
    lines = [f"nixld doctor (nixld {report['nixld']}): this machine runs {host['machine']} "
             f"({host['system'] or 'no Nix system'})", "", "Loader"]
    for entry in report["loaders"]:
        lines.extend(_render_loader(entry))
    lines += ["", "Library directories"]
    for entry in report["library_dirs"]:
        lines.extend(_render_library_dirs(entry))
    lines += ["", "Interpreter paths"]
    others = []
    for entry in report["interpreter_paths"]:
        if entry["this_machine"] or entry["exists"]:
            lines.append(f"  {_path_and_target(entry)} ({entry['system']}): {_describe_file(entry)}")
        else:
            others.append(entry["path"])
    if others:
        lines.append(f"  (not this machine's, and missing: {', '.join(others)})")
    if report["program"] is not None:
        lines += ["", "Program"]
        lines.extend(_render_program(report["program"]))
    if report["python"] is not None:
        lines += ["", "Python"]
        lines.extend(_render_python(report["python"]))
    lines += ["", "Findings"]
    findings = report["findings"]
    for finding in findings:
        fix = f"; fix: {finding['fix']}" if finding["fix"] else ""
        lines.append(f"  {finding['severity']}: {finding['message']}{fix}")
    if not findings:
        lines.append("  none")
    problems = sum(1 for finding in findings if finding["severity"] == PROBLEM)
    warnings = len(findings) - problems
    counts = f"{problems} problem{'s' * (problems != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    verdict = ("a launch would work" if report["ok"] else "fix the problems, then run nixld doctor again")
    lines += ["", f"{counts}: {verdict}"]
    return "\n".join(lines) + "\n"


def _render_loader(entry: dict) -> list[str]:
    source = entry["source"]
    unset = " and ".join(entry["unset"])
    if source in ("default", "interpreter"):
        chosen = f"{config.source_phrase(source)}: {unset} {'is' if len(entry['unset']) == 1 else 'are'} unset"
        if source == "interpreter":
            chosen += " and nix-ld's default does not exist"
    else:
        chosen = f"chosen by {source}"
        if entry["overrides"]:
            chosen += f", which wins over {' and '.join(entry['overrides'])}"
        elif entry["unset"]:
            chosen += f" ({unset} unset)"
    lines = [f"  {entry['system'] or 'no Nix system'}: {_path_and_target(entry)}", f"    {chosen}"]
    if entry["usable"]:
        lines += [f"    {_describe_file(entry)}", f"    launch options: {' '.join(entry['options']) or 'none'}"]
    else:
        lines.append(f"    not usable: {entry['error']}")
    return lines


def _describe_file(entry: dict) -> str:
    """What a loader or interpreter-path file is, in a few words."""
    kind = entry["kind"]
    if kind == "loader":
        version = entry["libc_version"] or "(version unknown)"
        release = f" ({entry['libc_release']})" if entry["libc_release"] else ""
        libc = "an unrecognised C library's" if entry["libc"] == "unrecognised" else f"{entry['libc']} {version}"
        return f"{libc} loader for {entry['machine']}{release}"
    if kind == "nixld-shim":
        which = ("this installation's" if entry["shim"] == "installed" else "another build of")
        return f"nixld's shim ({which}): programs start directly and keep their /proc/self/exe"
    if kind == "nix-ld-shim":
        return ("a shim that reads NIX_LD (nix-ld's): programs start directly; nixld's shim would "
                "also keep LD_LIBRARY_PATH from their children")
    if kind == "stub-ld":
        return "NixOS's stub-ld: programs that name it fail with an explanation"
    if kind == "missing":
        return "does not exist"
    if kind == "other-machine":
        return f"a file for {entry['machine']} programs"
    return "not a loader nor a shim" + (f" ({entry['machine']} ELF file)" if entry["machine"] else "")


def _path_and_target(entry: dict) -> str:
    """A path, and where it leads when it is a symbolic link."""
    return entry["path"] + (f" -> {entry['target']}" if entry["target"] else "")


def _render_library_dirs(entry: dict) -> list[str]:
    source = entry["source"]
    origin = config.source_phrase(source, entry["system"], "NIX_LD_LIBRARY_PATH", why=True)
    lines = [f"  {entry['system']}: {origin}"]
    machine = machine_of(entry["system"])
    for directory in entry["directories"]:
        if not directory["exists"]:
            state = "does not exist"
        elif not directory["is_directory"]:
            state = "not a directory"
        elif directory["error"] is not None:
            state = f"cannot be read: {directory['error']}"
        else:
            count = directory["shared_objects"]
            state = f"{count} {machine} shared object{'s' * (count != 1)}"
            if directory["other_machines"]:
                state += f", {directory['other_machines']} of other machines"
        lines.append(f"    {directory['path']}: {state}")
    if not entry["directories"]:
        lines.append("    (none)")
    return lines


def _render_program(program: dict) -> list[str]:
    libc = f"{program['libc']} program" if program["libc"] else "its C library unknown"
    lines = [f"  {program['path']}: {program['class']}-bit {program['machine']} "
             f"({program['system'] or 'no Nix system'}), {libc}"
             + (", statically linked: it starts by itself, with no loader" if program["static"] else "")]
    interpreter = program["interpreter"]
    if interpreter is not None:
        starts = interpreter["kind"] in STARTS_DIRECTLY
        lines.append(f"  interpreter {_path_and_target(interpreter)}: {_describe_file(interpreter)}"
                     + ("" if starts else "; `nixld run` starts it through the loader"))
        lines.append(f"  loader {program['loader']} (see Loader)")
    if not program["static"]:
        found = program["libraries"] - len(program["missing"])
        missing = ", ".join(library["soname"] for library in program["missing"])
        lines.append(f"  libraries: {found} of {program['libraries']} found"
                     + (f"; missing: {missing}" if missing else ""))
    for entry in program["current_directory_paths"]:
        lines.append(f"  {entry['tag']} of {entry['object']}: {entry['value']!r}")
    lines.append(f"  /proc/self/exe: {'mentioned' if program['mentions_proc_self_exe'] else 'not mentioned'}")
    starters = ", ".join(program["starts_programs"])
    lines.append(f"  starts other programs: {'yes (' + starters + ')' if starters else 'no sign of it'}")
    return lines


def _render_python(python: dict) -> list[str]:
    loader = f"loader {python['loader']}" if python["loader"] else "statically linked: it loads no extension module"
    hook = python["hook"]
    state = "installed" if hook["installed"] else "not installed"
    lines = [f"  {python['python']}: CPython {python['version']} for {python['machine']} "
             f"({python['system'] or 'no Nix system'}), {loader}",
             f"  site-packages: {', '.join(python['site_packages'])} (nixld's Python hook: {state})"]
    failing = python["failing"]
    count = python["shared_objects"]
    lines.append(f"  shared objects: {count}; {len(failing) or 'none'} of them need{'s' * (len(failing) == 1)} "
                 "libraries its loader does not find" + (":" if failing else ""))
    for module in failing:
        line = f"    {module['relative']}: {', '.join(module['missing'])}"
        if module["still_missing"]:
            line += f"; in no NIX_LD directory: {', '.join(entry['soname'] for entry in module['still_missing'])}"
        else:
            sources = dict.fromkeys(load["path"].rsplit("/", 1)[0] for load in module["hook_loads"])
            line += f"; the hook finds {'it' if len(module['hook_loads']) == 1 else 'them'} in {', '.join(sources)}"
        lines.append(line)
    return lines
