"""`nixld doctor [PROGRAM]`: what the setup is, what would go wrong, and how to fix it.

Plan, then act, in three parts: nixld.doctor.facts gathers the facts (which loader each system
gets and from which variable, the library directories, what sits at the well-known interpreter
paths and, for a PROGRAM, what `nixld inspect` finds; nixld.doctor.python, for a Python, which
of its extension modules its loader would not load) into plain, JSON-ready dicts;
nixld.doctor.findings derives from them, by pure functions, the findings, each one line with
the fix to apply; nixld.commands.doctor renders the report as text (`--json` prints it as it
is). Nothing is run but what `nixld inspect` runs (the loader's `--help`) and, with --python,
the Python, asked what it is.
"""

from __future__ import annotations

import os

from nixld import elf, shims
from nixld.doctor.facts import (INTERPRETER_PATHS, configured_systems, host_system, interpreter_facts,
                                library_dir_facts, loader_facts, loader_systems, plan_facts, program_facts)
from nixld.doctor.findings import PROBLEM, findings_of
from nixld.errors import NotExecutable, display


def diagnose(env: dict, program: bytes | None = None, *, interpreter_paths=INTERPRETER_PATHS,
             python: bytes | None = None) -> dict:
    """The report on the setup `env` (bytes to bytes) gives, on `program` and on the Python
    `python` when given, as JSON-ready data (see the README). `interpreter_paths` maps Nix
    systems to (path, C library) pairs, as INTERPRETER_PATHS does. Raises ProgramNotFound or
    NotExecutable for a program that does not exist or is not an ELF file, and what
    nixld.pyhook.describe_python raises for a `python` that is not a Python it can ask."""
    import nixld  # start-up time: inspect brings pyelftools
    from nixld.doctor.python import python_facts

    host = host_system()
    inspection = header = plan = None
    if program is not None:
        inspection = nixld.inspect(program, env=env)
        # What `nixld run` refuses as no program of its own (a shared library, a file without
        # the x bit) is refused here too, as it refuses it.
        plan = plan_facts(inspection.path, env)
        try:
            header = elf.read_header(inspection.path)
        except (OSError, elf.ElfError) as error:
            raise NotExecutable(f"{display(inspection.path)}: {getattr(error, 'strerror', None) or error}") from None
    program_system = None if inspection is None else inspection.system

    interpreters = [interpreter_facts(path, system, libc)
                    for system, entries in interpreter_paths.items() for path, libc in entries]
    loaders = []
    for system in loader_systems(env, program_system):
        if inspection is not None and system == program_system:
            loaders.append(loader_facts(env, system, inspection.path, header))
        else:
            loaders.append(loader_facts(env, system))
    if inspection is not None and program_system is None:  # a machine Nix has no name for
        loaders.append(loader_facts(env, None, inspection.path, header))
    library_systems = [host] + [s for s in [program_system] + configured_systems(env, b"NIX_LD_LIBRARY_PATH")
                                if s is not None and s != host]
    library_dirs = [library_dir_facts(env, system) for system in dict.fromkeys(library_systems) if system]

    report = {
        "nixld": nixld.__version__,
        "host": {"machine": elf.host_machine_name(), "system": host},
        "environment": {os.fsdecode(name): os.fsdecode(value) for name, value in sorted(env.items())
                        if name.startswith(b"NIX_LD") or name == b"LD_LIBRARY_PATH"},
        "loaders": loaders,
        "library_dirs": library_dirs,
        "interpreter_paths": interpreters,
        "shims_built": shims.built_systems(),
        "program": None,
        "python": None if python is None else python_facts(python, env),
    }
    if inspection is not None:
        program_loader = next(entry for entry in loaders if entry["system"] == program_system)
        report["program"] = program_facts(inspection, header, program_loader, plan, interpreter_paths)
    # Problems first: what must be fixed before a launch would work.
    findings = [finding._asdict() for finding in sorted(findings_of(report, env), key=lambda f: f.severity != PROBLEM)]
    report["findings"] = findings
    report["ok"] = not any(finding["severity"] == PROBLEM for finding in findings)
    return report
