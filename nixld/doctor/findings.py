"""The findings of `nixld doctor`: pure functions of the facts nixld.doctor.facts gathered, each
finding one line saying what is wrong, with the setting to change."""

from __future__ import annotations

import os
import shlex
from collections import namedtuple

from nixld import config, elf, shims
from nixld import loader as launch
from nixld.doctor.facts import STARTS_DIRECTLY, configured_systems, machine_of, needs_own_variable

PROBLEM, WARNING = "problem", "warning"

Finding = namedtuple("Finding", "severity topic message fix")
Finding.__doc__ = """One thing that is wrong or risky: `severity` PROBLEM (a launch would fail or
misbehave: exit status 1) or WARNING, `topic` the report section it belongs to, `message` one
line saying what, `fix` one line saying which setting to change (None: nothing to change)."""


def findings_of(report: dict, env) -> list[Finding]:
    program = report["program"]
    host = report["host"]["system"]
    findings = list(_environment_findings(env))
    configured = set(configured_systems(env, b"NIX_LD"))
    # With a PROGRAM, only what stands in its way is a problem; the rest of the setup is warned
    # of when it was set by hand, and left out otherwise.
    if program is not None:
        relevant = set() if program["static"] else {program["system"]}
        shown = {program["system"]} | configured
    else:
        relevant = {host} | configured
        shown = {entry["system"] for entry in report["loaders"]}
    for entry in report["loaders"]:
        finding = _loader_finding(entry, host, program) if entry["system"] in shown else None
        if finding is not None and entry["system"] not in relevant:
            finding = finding._replace(severity=WARNING)
        if finding is not None:
            findings.append(finding)
    for entry in report["library_dirs"]:
        if program is not None and entry["source"] == "default" and not program["missing"]:
            continue  # nothing set, nothing missing: nothing to say
        findings.extend(_library_dir_findings(entry, program is None))
    for entry in report["interpreter_paths"]:
        findings.extend(finding for finding in _interpreter_findings(entry, report)
                        if program is None or finding.severity == PROBLEM)
    if program is not None:
        findings.extend(_program_findings(program, report, host))
    if report["python"] is not None:
        findings.extend(_python_findings(report["python"]))
    return findings


def _python_findings(python: dict):
    """The Python's shared objects its loader would not load: fixed by the hook (installed, or
    to install), or missing a library no NIX_LD directory holds."""
    from nixld.doctor.python import where_looked

    shown = python["python"]
    fixable = [module for module in python["failing"] if not module["still_missing"]]
    if fixable and not python["hook"]["installed"]:
        names = _names(name for module in fixable for name in module["missing"])
        sources = list(dict.fromkeys(os.path.dirname(load["path"]) for module in fixable
                                     for load in module["hook_loads"]))
        yield Finding(PROBLEM, "python", f"{_modules(fixable)} of {shown} cannot be loaded: its loader does not "
                      f"find {names}, which the NIX_LD library directories hold",
                      f"nixld python-hook install --python {shlex.quote(shown)} (it loads them from "
                      f"{', '.join(sources)} when they are missing, and leaves the environment alone)")
    broken = [module for module in python["failing"] if module["still_missing"]]
    if broken:
        absent = list(dict.fromkeys(entry["soname"] for module in broken for entry in module["still_missing"]))
        yield Finding(PROBLEM, "python", f"{_modules(broken)} of {shown} cannot be loaded, even with nixld's Python "
                      f"hook: {_names(absent)} {'is' if len(absent) == 1 else 'are'} in no NIX_LD library directory "
                      f"(looked in {where_looked(python)})",
                      f"add a directory that holds {'it' if len(absent) == 1 else 'them'} to NIX_LD_LIBRARY_PATH (on "
                      f"NixOS: the package to programs.nix-ld.libraries); `nixld find-libs "
                      f"{shlex.quote(broken[0]['path'])}` looks for one")


def _modules(modules: list[dict]) -> str:
    """`numpy/core/_multiarray_umath....so and 3 other shared objects`, in a finding."""
    others = len(modules) - 1
    return modules[0]["relative"] + (f" and {others} other shared object{'s' * (others != 1)}" if others else "")


def _names(names) -> str:
    return ", ".join(dict.fromkeys(names))


def _environment_findings(env):
    _, complaint = config.log_level(env)
    if complaint is not None:
        yield Finding(WARNING, "environment", complaint, f"set NIX_LD_LOG to one of {', '.join(config.LOG_LEVELS)}")
    for name in sorted(env):
        for prefix in (b"NIX_LD_LIBRARY_PATH_", b"NIX_LD_"):
            if name.startswith(prefix):
                break
        else:
            continue
        suffix = os.fsdecode(name[len(prefix):])
        if any(name in config.system_variables(prefix[:-1], system) for system in elf.SYSTEM_ABIS) or (
                prefix == b"NIX_LD_" and suffix in ("LOG", "LIBRARY_PATH")):
            continue
        spelling = suffix.replace("-", "_")
        rename = (f"rename it {os.fsdecode(prefix)}{spelling}" if spelling in elf.SYSTEM_ABIS else
                  f"name a system in nix-ld's spelling: {', '.join(elf.SYSTEM_ABIS)}")
        yield Finding(WARNING, "environment", f"{os.fsdecode(name)} is not a variable nixld reads "
                      f"({suffix!r} is not a Nix system in nix-ld's spelling)", rename)


def _loader_finding(entry: dict, host: str | None, program: dict | None) -> Finding | None:
    """What is wrong with a system's loader, as a problem (the caller decides how grave)."""
    if entry["usable"]:
        if "--library-path" not in entry["options"]:
            return Finding(WARNING, "loader", f"loader {entry['path']} ({config.source_phrase(entry['source'])}) has "
                           "no --library-path option: nixld passes the library path in LD_LIBRARY_PATH, which "
                           "the programs' children inherit",
                           launch.loader_advice(entry["source"], entry["system"], entry["machine"]))
        return None
    system = entry["system"]
    message = entry["error"]
    own_variable = f"NIX_LD_{system}"
    if needs_own_variable(entry, host):
        if program is not None and program["system"] == system:
            message = (f"{program['path']} is a {program['class']}-bit {program['machine']} program and "
                       f"{own_variable} is unset: {message}")
        else:
            message = f"{own_variable} is unset, so {system} programs get no loader of their own: {message}"
    elif entry["source"] == "default" and entry["kind"] == "missing":
        message += (": programs whose own interpreter exists still start, foreign ones cannot"
                    if program is None else "")
    return Finding(PROBLEM, "loader", message, entry["fix"])


def _library_dir_findings(entry: dict, setup_only: bool):
    """Library directories that do not exist, are relative, or hold no library of the
    system's machine: problems when they are the setup under examination and were set by
    hand; warnings otherwise (with a PROGRAM, its missing libraries are the problem)."""
    source, system = entry["source"], entry["system"]
    configured = source != "default"
    severity = PROBLEM if setup_only and configured else WARNING
    machine = machine_of(system)
    setting = source if configured else f"NIX_LD_LIBRARY_PATH (or NIX_LD_LIBRARY_PATH_{system})"
    libraries = f"the {machine} libraries your programs need"

    def change(what: str) -> str:
        if not configured:
            return (f"set {setting} to the directories of {libraries} (on NixOS, programs.nix-ld.enable = "
                    "true and programs.nix-ld.libraries)")
        return f"remove it from {source}, or {what}"

    if configured and not entry["directories"]:
        yield Finding(severity, "library-dirs", f"{source} names no directory",
                      f"set {source} to directories separated by ':'")
    for directory in entry["directories"]:
        shown = f"library directory {directory['path']} ({config.source_phrase(source)})"
        if not directory["exists"]:
            yield Finding(severity, "library-dirs", f"{shown} does not exist", change(f"create it with {libraries}"))
        elif not directory["is_directory"]:
            yield Finding(severity, "library-dirs", f"{shown} is not a directory",
                          change(f"make it a directory of {libraries}"))
        elif directory["error"] is not None:
            yield Finding(severity, "library-dirs", f"{shown} cannot be read: {directory['error']}",
                          change(f"make it readable (chmod a+rx {shlex.quote(directory['path'])})"))
        elif directory["shared_objects"] == 0:
            others = (f" (only {directory['other_machines']} of other machines)"
                      if directory["other_machines"] else "")
            yield Finding(severity, "library-dirs", f"{shown} holds no {machine} shared object{others}",
                          change(f"put {libraries} in it"))
        if directory["relative"]:
            yield Finding(WARNING, "library-dirs", f"{shown} is relative: it is searched from whatever "
                          "directory the program starts in", f"write it as an absolute path in {source}")


def _interpreter_findings(entry: dict, report: dict):
    """A well-known interpreter path whose file cannot start anything is a problem; one that
    nothing is at, where nixld's shim could be, is a warning saying what the shim would fix."""
    if not entry["this_machine"] or entry["kind"] in ("loader", "nixld-shim", "nix-ld-shim"):
        return
    path, system = entry["path"], entry["system"]
    if entry["kind"] in ("other", "other-machine"):
        what = "a file for another machine" if entry["kind"] == "other-machine" else "neither a loader nor a shim"
        yield Finding(PROBLEM, "interpreter-paths", f"{path} is {what}: every program that names it fails to "
                      "start", f"remove it, or {shim_fix(path, system, report)}")
        return
    if entry["for_libc"] != "glibc" or system not in shims.SHIM_SYSTEMS:
        return  # the shim hands programs to NIX_LD, a glibc loader: not one for musl's path
    state = "does not exist" if entry["kind"] == "missing" else "is NixOS's stub-ld"
    yield Finding(WARNING, "interpreter-paths", f"{path} {state}: {system} programs that name it start only "
                  "through `nixld run`, where /proc/self/exe is the loader, and cannot start each other",
                  shim_fix(path, system, report))


def shim_fix(path: str, system: str | None, report: dict) -> str:
    """How to put nixld's shim at the interpreter `path` of `system`'s programs."""
    if system not in report["shims_built"]:
        return f"put a shim at {path} (nix-ld's: programs.nix-ld.enable = true)"
    option = "environment.ldso32" if system == "i686_linux" and report["host"]["system"] != system else "environment.ldso"
    return (f"put nixld's shim at {path}: on NixOS set {option} to a copy of `nixld shim --path --system "
            f"{system}` (README: The shim); elsewhere, copy it there")


def _program_findings(program: dict, report: dict, host: str | None):
    loaders, interpreters = report["loaders"], report["interpreter_paths"]
    path = program["path"]
    quoted = shlex.quote(path)
    loader = next(entry for entry in loaders if entry["system"] == program["system"])
    refusal = None
    if program["plan_error"] is not None:
        own = f"NIX_LD_{program['system']}"
        refusal = Finding(PROBLEM, "program", program["plan_error"],
                          launch.loader_advice(own, program["system"], program["machine"])
                          if program["plan_error_kind"] == "ArchitectureMismatch" and program["system"] else
                          f"see what `NIX_LD_LOG=debug nixld run --dry-run {quoted}` decides")
    if program["static"]:
        # Another machine's static program is refused by `nixld run` all the same.
        if refusal is not None:
            yield refusal
        return
    if loader["usable"]:
        for message in program["plan_warnings"]:
            yield Finding(WARNING, "program", message, None)
        if refusal is not None:
            yield refusal
        if program["libc"] and loader["libc"] in ("glibc", "musl") and program["libc"] != loader["libc"]:
            yield Finding(PROBLEM, "program", f"{path} is a {program['libc']} program but its loader "
                          f"{loader['path']} ({config.source_phrase(loader['source'])}) is {loader['libc']}'s",
                          _libc_fix(program, loader, interpreters, quoted))
    if program["missing"]:
        names = ", ".join(f"{library['soname']} (needed by {', '.join(library['needed_by'])})"
                          for library in program["missing"])
        count = len(program["missing"])
        system = program["system"]
        # The variable in effect, as `nixld find-libs` names it.
        in_effect = [entry["source"] for entry in report["library_dirs"]
                     if entry["system"] == system and entry["source"] != "default"]
        variable = in_effect[0] if in_effect else (
            "NIX_LD_LIBRARY_PATH" if system == host or system is None else f"NIX_LD_LIBRARY_PATH_{system}")
        yield Finding(PROBLEM, "program", f"{count} librar{'y is' if count == 1 else 'ies are'} not found: {names}",
                      f"run `nixld find-libs {quoted}` to find directories that hold "
                      f"{'it' if count == 1 else 'them'}, and add those to "
                      f"{variable} (or give them to `nixld run -L DIR`)")
    for entry in program["current_directory_paths"]:
        force = "--force-rpath " if entry["tag"] == "RPATH" else ""
        fix = (f"patchelf {force}--set-rpath {shlex.quote(entry['without_them'])} {shlex.quote(entry['object'])}"
               if entry["without_them"] else f"patchelf --remove-rpath {shlex.quote(entry['object'])}")
        one = len(entry["entries"]) == 1
        yield Finding(PROBLEM, "program", f"{entry['object']} has the {entry['tag']} {entry['value']!r}, with "
                      f"{_bad_entries(entry['entries'])}, which glibc searches relative to the current "
                      "directory: libraries are loaded from wherever the program starts",
                      f"remove {'it' if one else 'them'}: {fix}")
    interpreter = program["interpreter"]
    if interpreter is None or interpreter["kind"] in STARTS_DIRECTLY:
        return
    state = _state(interpreter)
    in_place = f"nixld wrap --in-place --format binary {quoted}"
    if program["well_known_interpreter"]:
        fix = shim_fix(interpreter["path"], program["system"], report)
    else:
        fix = (f"wrap it where it is, `{in_place}` (its /proc/self/exe is then the wrapper, beside its files), "
               f"or point its interpreter at the shim: patchelf --set-interpreter \"$(nixld shim --path)\" {quoted}")
    if program["mentions_proc_self_exe"]:
        if program["well_known_interpreter"]:
            fix += f"; or wrap it where it is: {in_place}"
        yield Finding(PROBLEM, "program", f"{path} mentions /proc/self/exe and its interpreter "
                      f"{interpreter['path']} {state}: started by `nixld run`, its /proc/self/exe is the loader, and "
                      "through a wrapper written in another directory it is that wrapper, so a program that finds "
                      "its own files beside /proc/self/exe, or re-executes itself, goes wrong", fix)
    # The programs it starts name their own interpreters: most likely this system's usual one.
    usual = next((entry for entry in interpreters if entry["system"] == program["system"]
                  and entry["for_libc"] == (program["libc"] or "glibc")), None)
    if program["starts_programs"] and (usual is None or usual["kind"] not in STARTS_DIRECTLY):
        where = interpreter["path"] if usual is None else usual["path"]
        yield Finding(WARNING, "program", f"{path} starts other programs ({', '.join(program['starts_programs'])}) "
                      f"and {where} {state if usual is None else _state(usual)}: a foreign program it starts "
                      "cannot start (this system's own programs can)", shim_fix(where, program["system"], report))


def _bad_entries(entries: list[str]) -> str:
    """'an empty entry', '2 empty entries and the relative entry 'lib'', as a message says them."""
    empty = sum(1 for entry in entries if not entry)
    relative = [repr(entry) for entry in entries if entry]
    parts = []
    if empty:
        parts.append("an empty entry" if empty == 1 else f"{empty} empty entries")
    if relative:
        parts.append(f"the relative entr{'y' if len(relative) == 1 else 'ies'} {', '.join(relative)}")
    return " and ".join(parts)


def _state(entry: dict) -> str:
    """Why nothing starts through an interpreter path."""
    return {"missing": "does not exist", "stub-ld": "is NixOS's stub-ld"}.get(entry["kind"], "is not a loader")


def _libc_fix(program: dict, loader: dict, interpreters: list[dict], quoted: str) -> str:
    if program["libc"] == "glibc":
        return launch.loader_advice(loader["source"], program["system"], program["machine"])
    # NIX_LD stays glibc's, for the glibc programs; a musl program gets musl's loader by hand.
    known = [entry["path"] for entry in interpreters
             if entry["system"] == program["system"] and entry["libc"] == "musl" and entry["kind"] == "loader"]
    musl = shlex.quote(known[0]) if known else "MUSL_LOADER"
    return (f"start it with musl's loader: `nixld run --ld {musl} {quoted}` (or `nixld wrap --ld {musl} "
            f"{quoted}`), as {loader['source'] if loader['source'].startswith('NIX_LD') else 'NIX_LD'} "
            "serves glibc programs")
