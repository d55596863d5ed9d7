"""`nixld doctor [PROGRAM]`: what the setup is, what would go wrong, and how to fix it.

Plan, then act: `diagnose` gathers the facts (which loader each system gets and from which
variable, the library directories, what sits at the well-known interpreter paths and, for a
PROGRAM, what `nixld inspect` finds) into plain, JSON-ready dicts, and derives from them the
findings, each one line with the fix to apply. nixld.commands.doctor renders it as text; `--json`
prints it as it is. Nothing is run but what `nixld inspect` runs (the loader's `--help`).
"""

from __future__ import annotations

import filecmp
import os
import re
import shlex
from collections import namedtuple

from nixld import config, elf, shims
from nixld import loader as launch
from nixld.errors import ArchitectureMismatch, LoaderError, NotExecutable, display

# The well-known program interpreters, by the Nix system of the programs that name them, with
# the C library each belongs to. A foreign program names one of these; NixOS has none of them
# unless nix-ld (or `environment.ldso`) puts a shim there.
INTERPRETER_PATHS = {
    "x86_64_linux": ((b"/lib64/ld-linux-x86-64.so.2", "glibc"), (b"/lib/ld-musl-x86_64.so.1", "musl")),
    "i686_linux": ((b"/lib/ld-linux.so.2", "glibc"),),
    "aarch64_linux": ((b"/lib/ld-linux-aarch64.so.1", "glibc"),),
    "armv7l_linux": ((b"/lib/ld-linux-armhf.so.3", "glibc"),),
    "powerpc64le_linux": ((b"/lib64/ld64.so.2", "glibc"),),
    "riscv64_linux": ((b"/lib/ld-linux-riscv64-lp64d.so.1", "glibc"),),
}

# What tells the files at an interpreter path apart, in their read-only data.
_NIXLD_SHIM_MARK = b"nixld shim: "  # the prefix of every message of nixld's shim
_STUB_LD_MARK = b"nix.dev/permalink/stub-ld"  # NixOS's stub-ld, which only explains the failure
_NIX_LD_MARK = b"NIX_LD"  # a shim that reads nix-ld's variables: nix-ld's own, or another
_PROC_SELF_EXE = b"/proc/self/exe"

# What starts another program: a foreign child fails unless a shim is at its interpreter path.
_PROGRAM_STARTERS = frozenset({"execve", "execv", "execvp", "execvpe", "execl", "execlp", "execle", "execveat",
                               "fexecve", "posix_spawn", "posix_spawnp", "system", "popen"})

# A library's file name: libfoo.so, libfoo.so.1, libfoo.so.1.2.3.
_SHARED_OBJECT_NAME = re.compile(rb"\.so(\.[0-9]+)*$")
# glibc's loader says which release it is ("ld.so (GNU libc) stable release version 2.40.");
# musl keeps its version as a string of its own ("1.2.3").
_GLIBC_RELEASE = re.compile(rb"ld\.so \(([^)\0\n]*)\) (?:stable |development )?release version "
                            rb"([0-9]+\.[0-9]+(?:\.[0-9]+)?)")
_MUSL_VERSION = re.compile(rb"(?<=\0)([0-9]+\.[0-9]+\.[0-9]+(?:[-+_][0-9A-Za-z.+_-]*)?)(?=\0)")

# Interpreter kinds under which a program starts by itself, so /proc/self/exe is the program
# and the programs it starts start too.
STARTS_DIRECTLY = ("loader", "nixld-shim", "nix-ld-shim")

PROBLEM, WARNING = "problem", "warning"

Finding = namedtuple("Finding", "severity topic message fix")
Finding.__doc__ = """One thing that is wrong or risky: `severity` PROBLEM (a launch would fail or
misbehave: exit status 1) or WARNING, `topic` the report section it belongs to, `message` one
line saying what, `fix` one line saying which setting to change (None: nothing to change)."""


# ---------------------------------------------------------------------------------------------
# Gathering the facts


def diagnose(env: dict, program: bytes | None = None, *, interpreter_paths=INTERPRETER_PATHS) -> dict:
    """The report on the setup `env` (bytes to bytes) gives, and on `program` when given, as
    JSON-ready data (see the README). `interpreter_paths` maps Nix systems to (path, C library)
    pairs, as INTERPRETER_PATHS does. Raises ProgramNotFound or NotExecutable for a program that
    does not exist or is not an ELF file."""
    import nixld  # start-up time: inspect brings pyelftools

    host = host_system()
    inspection = header = plan = None
    if program is not None:
        inspection = nixld.inspect(program, env=env)
        # What `nixld run` refuses as no program of its own (a shared library, a file without
        # the x bit) is refused here too, as it refuses it.
        plan = _plan(inspection.path, env)
        try:
            header = elf.read_header(inspection.path)
        except (OSError, elf.ElfError) as error:
            raise NotExecutable(f"{display(inspection.path)}: {getattr(error, 'strerror', None) or error}") from None
    program_system = None if inspection is None else inspection.system

    interpreters = [interpreter_facts(path, system, libc)
                    for system, entries in interpreter_paths.items() for path, libc in entries]
    loaders = []
    for system in _loader_systems(env, program_system):
        if inspection is not None and system == program_system:
            loaders.append(loader_facts(env, system, inspection.path, header))
        else:
            loaders.append(loader_facts(env, system))
    if inspection is not None and program_system is None:  # a machine Nix has no name for
        loaders.append(loader_facts(env, None, inspection.path, header))
    library_systems = [host] + [s for s in [program_system] + _configured_systems(env, b"NIX_LD_LIBRARY_PATH_")
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
        "program": None,
    }
    if inspection is not None:
        program_loader = next(entry for entry in loaders if entry["system"] == program_system)
        report["program"] = program_facts(inspection, header, program_loader, plan, interpreter_paths)
    # Problems first: what must be fixed before a launch would work.
    findings = [finding._asdict() for finding in sorted(_findings(report, env), key=lambda f: f.severity != PROBLEM)]
    report["findings"] = findings
    report["ok"] = not any(finding["severity"] == PROBLEM for finding in findings)
    return report


def host_system() -> str | None:
    """The Nix system of this machine's own programs, None for a machine Nix has no name for."""
    return shims.host_system()


def system_header(system: str) -> elf.ElfHeader:
    """A program header standing for every program of `system`, to check a loader against."""
    elf_class, little_endian, machine = elf.SYSTEM_ABIS[system]
    return elf.ElfHeader(elf_class, little_endian, machine, elf.ET_DYN, 0, None, None, ())


def _loader_systems(env, program_system: str | None) -> list[str]:
    """The systems whose loader the report shows: this machine's, the other one its kernel
    runs, the program's and any that a NIX_LD_{system} variable names."""
    # The host's own, then the other systems its kernel runs natively (i686 on x86-64), each
    # with a loader of its own.
    systems = [*elf.host_systems(), program_system, *_configured_systems(env, b"NIX_LD_")]
    return [system for system in dict.fromkeys(systems) if system is not None]


def _configured_systems(env, prefix: bytes) -> list[str]:
    """The Nix systems for which a variable `prefix`{system} is set."""
    return [system for system in elf.SYSTEM_ABIS if config.setting(env, prefix + system.encode()) is not None]


def loader_facts(env, system: str | None, program: bytes | None = None,
                 header: elf.ElfHeader | None = None) -> dict:
    """The loader `system`'s programs get (`program`'s, when given: it may fall back to the
    program's own interpreter, as `nixld run` does), the variable it came from and what it is."""
    if program is None:
        path, source = config.choose_loader(env, system)
        header = system_header(system)
        program = f"{system} programs".encode()
    else:
        path, source, _ = launch.choose_loader(env, system, None, program, header)
    candidates = [] if system is None else [f"NIX_LD_{system}"]
    candidates.append("NIX_LD")
    overrides = candidates[candidates.index(source) + 1:] if source in candidates else []
    facts = {
        "system": system,
        "path": os.fsdecode(path),
        "source": source,
        "overrides": [name for name in overrides if config.setting(env, name.encode()) is not None],
        "unset": [name for name in candidates if config.setting(env, name.encode()) is None],
    }
    facts.update(identify(path, header, source, program))
    facts["usable"] = facts["kind"] == "loader"
    if not facts["usable"] and _needs_own_variable(facts, host_system()):
        # NIX_LD serves this machine's programs; another system's need a variable of their own.
        facts["fix"] = launch.loader_advice(f"NIX_LD_{system}", system, header.machine_name)
        if not elf.host_runs(header):
            facts["fix"] += " and an emulator (binfmt_misc) for it"
    return facts


def _needs_own_variable(entry: dict, host: str | None) -> bool:
    """True when the loader of another system than this machine's came from NIX_LD or a
    default, and NIX_LD_{system} is what to set."""
    system = entry["system"]
    return system is not None and system != host and entry["source"] != f"NIX_LD_{system}"


def identify(path: bytes, expected: elf.ElfHeader, source: str = "interpreter", program: bytes = b"") -> dict:
    """What the file at `path` is, as the loader of programs like `expected`'s: `kind` is
    "loader", "missing", "nixld-shim", "nix-ld-shim" (another shim that reads NIX_LD),
    "stub-ld" (NixOS's stub, which only explains the failure), "other-machine" (an ELF file of
    another machine) or "other"; for a loader, its C library, version and launch options.
    `error` says why it is not a usable loader, `fix` what to change (for a loader chosen from
    `source`)."""
    shown = f"loader {display(path)} ({source_phrase(source)})"
    facts = {"exists": os.path.exists(path), "target": None, "kind": "missing", "machine": None, "libc": None,
             "libc_version": None, "libc_release": None, "options": [], "shim": None, "error": None,
             "fix": launch.loader_advice(source, expected.system, expected.machine_name)}
    if os.path.islink(path):
        facts["target"] = os.fsdecode(os.path.realpath(path))
    # The verdict is `nixld run`'s own; what follows only tells what the file is instead.
    try:
        libc, options = launch.check_loader(path, source, expected.system, program, expected)
    except LoaderError as error:
        refusal = _without_suffix(error.message, ": " + facts["fix"])
    else:
        facts.update(kind="loader", machine=expected.machine_name, libc=libc,
                     options=[os.fsdecode(option) for option in options], fix=None)
        facts.update(_libc_version(path, elf.read_header(path), libc))
        return facts
    if not facts["exists"]:
        facts["error"] = f"{shown} does not exist" + (f" (a symbolic link to {facts['target']})"
                                                      if facts["target"] else "")
        return facts
    facts["kind"] = "other"
    try:
        header = elf.read_header(path)
    except elf.NotRegularFile:
        facts["error"] = f"{shown} is not a regular file"
        return facts
    except elf.NotElf:
        facts["error"] = f"{shown} is not an ELF file"
        return facts
    except (OSError, elf.ElfError) as error:
        facts["error"] = f"{shown}: {getattr(error, 'strerror', None) or error}"
        return facts
    facts["machine"] = header.machine_name
    shim = _nixld_shim(path, header)
    if shim is not None:
        facts.update(kind="nixld-shim", shim=shim,
                     error=f"{shown} is nixld's shim, not a loader: the shim itself hands programs to "
                           "the loader NIX_LD names")
        return facts
    if header.abi != expected.abi:
        facts["kind"] = "other-machine"
        facts["error"] = f"{shown} is for {header.machine_name} programs, not {expected.machine_name} ones"
        return facts
    facts["error"] = refusal
    facts["kind"] = _shim_kind(path, header)
    return facts


def source_phrase(source: str) -> str:
    """Where a loader came from, in the words check_loader's messages use."""
    if source == "default":
        return "nix-ld's default"
    if source == "interpreter":
        return "the program's own interpreter"
    return "given with --ld" if source == "--ld" else f"from {source}"


def _without_suffix(text: str, suffix: str) -> str:
    return text[:-len(suffix)] if suffix and text.endswith(suffix) else text


def _nixld_shim(path: bytes, header: elf.ElfHeader) -> str | None:
    """"installed" when `path` is this installation's shim for its system, byte for byte;
    "other build" when it is another build of nixld's shim; None when it is not one."""
    system = header.system
    if system in shims.SHIM_SYSTEMS:
        try:
            if filecmp.cmp(path, shims.shim_path(system), shallow=False):
                return "installed"
        except (shims.ShimUnavailable, OSError):
            pass
    return "other build" if _mentions(path, header, _NIXLD_SHIM_MARK) else None


def _shim_kind(path: bytes, header: elf.ElfHeader) -> str:
    """What a file that is no loader is, at an interpreter path: a stub or a shim, or "other"."""
    if _mentions(path, header, _STUB_LD_MARK):
        return "stub-ld"
    if header.interpreter is None and _mentions(path, header, _NIX_LD_MARK):
        return "nix-ld-shim"
    return "other"


def _mentions(path: bytes, header: elf.ElfHeader, needle: bytes) -> bool:
    from nixld.objects import mentions  # start-up time: objects is inspect's

    try:
        return mentions(path, needle, elf.constant_data(header.loads))
    except (OSError, ValueError):
        return False


def _libc_version(path: bytes, header: elf.ElfHeader, libc: str) -> dict:
    """The loader's C library version ("2.36", "1.2.3"; None when it does not say) and, for
    glibc, the release it names itself ("Debian GLIBC 2.36-9+deb12u14"), from its read-only
    data, where launch.check_loader found its kind."""
    try:
        with os.fdopen(elf.open_regular(path), "rb") as stream:
            pieces = [os.pread(stream.fileno(), size, offset) for offset, size in elf.constant_data(header.loads)]
    except (OSError, elf.NotRegularFile):
        pieces = []
    if libc == "glibc":
        for piece in pieces:
            match = _GLIBC_RELEASE.search(piece)
            if match:
                return {"libc_version": match.group(2).decode(),
                        "libc_release": match.group(1).decode(errors="replace")}
    elif libc == "musl":
        # musl is its own loader; its version is a string with nothing around it, which only
        # an unambiguous match can be taken for.
        found = {match.group(1) for piece in pieces for match in _MUSL_VERSION.finditer(piece)}
        if len(found) == 1:
            return {"libc_version": found.pop().decode(), "libc_release": None}
    return {"libc_version": None, "libc_release": None}


def library_dir_facts(env, system: str) -> dict:
    """The NIX_LD library directories `system`'s programs get, the variable they came from,
    and what each holds."""
    directories, source = config.nix_ld_library_dirs(env, system)
    abi = elf.SYSTEM_ABIS[system]
    return {"system": system, "source": source,
            "directories": [directory_facts(directory, abi) for directory in directories]}


def directory_facts(directory: bytes, abi: tuple[int, bool, int]) -> dict:
    """Whether `directory` exists, and how many shared objects (by name and ELF header) it
    holds for machines of `abi`, and for others; `error` says why it cannot be listed."""
    facts = {"path": os.fsdecode(directory), "relative": not directory.startswith(b"/"), "exists": False,
             "is_directory": False, "shared_objects": 0, "other_machines": 0, "error": None}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return facts
    except NotADirectoryError:
        facts["exists"] = True
        return facts
    except OSError as error:
        facts.update(exists=True, is_directory=True, error=error.strerror)
        return facts
    facts.update(exists=True, is_directory=True)
    for entry in entries:
        if not _SHARED_OBJECT_NAME.search(entry.name):
            continue
        try:
            header = elf.read_header(entry.path)
        except (OSError, elf.ElfError):  # a linker script (libc.so), a broken link
            continue
        facts["shared_objects" if header.abi == abi else "other_machines"] += 1
    return facts


def interpreter_facts(path: bytes, system: str, libc: str) -> dict:
    """What is at the well-known interpreter `path` of `system`'s `libc` programs."""
    facts = {"path": os.fsdecode(path), "system": system, "for_libc": libc,
             "this_machine": elf.host_runs(system_header(system))}
    facts.update(identify(path, system_header(system)))
    for name in ("error", "fix"):
        del facts[name]
    return facts


def program_facts(inspection, header: elf.ElfHeader, program_loader: dict, plan: dict, interpreter_paths) -> dict:
    """What matters about the program for its launch: its C library, its interpreter, the
    libraries `nixld inspect` does not find, its search path entries that mean the current
    directory, whether it mentions /proc/self/exe or starts other programs."""
    path = inspection.path
    interpreter = None
    if inspection.interpreter is not None:
        interpreter = {"path": os.fsdecode(inspection.interpreter), **identify(inspection.interpreter, header)}
        del interpreter["error"], interpreter["fix"]
    return {
        "path": os.fsdecode(path),
        "machine": inspection.machine,
        "system": inspection.system,
        "class": inspection.elf_class,
        "static": inspection.static,
        "libc": program_libc(inspection.needed, inspection.interpreter),
        "interpreter": interpreter,
        "well_known_interpreter": inspection.interpreter in {p for entries in interpreter_paths.values()
                                                             for p, _ in entries},
        "loader": program_loader["path"],
        "libraries": len(inspection.libraries),
        "missing": [{"soname": os.fsdecode(library.soname),
                     "needed_by": [os.fsdecode(needer) for needer in library.needed_by]}
                    for library in inspection.libraries if library.path is None],
        "current_directory_paths": _current_directory_paths(inspection),
        "mentions_proc_self_exe": _mentions(path, header, _PROC_SELF_EXE),
        "starts_programs": _program_starters(path),
        **plan,
        "inspect": inspection.as_json(),
    }


def program_libc(needed: tuple[bytes, ...], interpreter: bytes | None) -> str | None:
    """"glibc" or "musl", told by the program's DT_NEEDED (libc.so.6, libc.musl-*), else by
    its interpreter's name (ld-linux*, ld64.so*, ld-musl-*); None when neither says."""
    if b"libc.so.6" in needed:
        return "glibc"
    if any(name.startswith(b"libc.musl-") or name.startswith(b"ld-musl-") for name in needed):
        return "musl"
    name = os.path.basename(interpreter or b"")
    if name.startswith(b"ld-musl-"):
        return "musl"
    if name.startswith((b"ld-linux", b"ld64.so")):
        return "glibc"
    return None


def _current_directory_paths(inspection) -> list[dict]:
    """The program's and its libraries' RPATH or RUNPATH values with an empty or relative
    entry: glibc takes those from the directory the program starts in."""
    from nixld.objects import ObjectError
    from nixld.resolve import default_inspector

    paths = [inspection.path] + [library.path for library in inspection.libraries if library.path is not None]
    found = []
    for path in dict.fromkeys(paths):
        try:
            obj = default_inspector().objects.load(path)
        except (OSError, ObjectError):
            continue
        tag, entries = ("RUNPATH", obj.runpath) if obj.runpath is not None else ("RPATH", obj.rpath)
        bad = [entry for entry in entries if not entry.startswith((b"/", b"$"))]
        if bad:
            kept = [entry for entry in entries if entry.startswith((b"/", b"$"))]
            found.append({"object": os.fsdecode(path), "tag": tag, "value": os.fsdecode(b":".join(entries)),
                          "entries": [os.fsdecode(entry) for entry in bad],
                          "without_them": os.fsdecode(b":".join(kept))})
    return found


def _program_starters(path: bytes) -> list[str]:
    """The functions that start programs (exec*, posix_spawn, system, popen) the program
    imports, by its dynamic symbol table."""
    # Start-up time: pyelftools is for inspect and doctor only.
    from elftools.common.exceptions import ELFError, ELFParseError
    from elftools.construct.core import ConstructError
    from elftools.elf.dynamic import DynamicSegment
    from elftools.elf.elffile import ELFFile

    try:
        with os.fdopen(elf.open_regular(path), "rb") as stream:
            elffile = ELFFile(stream)
            table = elffile.get_section_by_name(".dynsym")
            if table is None:  # no section headers: the loader's way, through PT_DYNAMIC
                table = next((segment for segment in elffile.iter_segments()
                              if isinstance(segment, DynamicSegment)), None)
            if table is None:
                return []
            return sorted({symbol.name for symbol in table.iter_symbols()
                           if symbol.name in _PROGRAM_STARTERS and symbol["st_shndx"] == "SHN_UNDEF"})
    except (OSError, ELFError, ELFParseError, ConstructError, ValueError, KeyError):
        return []


def _plan(path: bytes, env) -> dict:
    """What `nixld run` would warn of when it plans the launch (a loader without --argv0,
    set-user-ID bits; NIX_LD_LOG's value is the environment's finding), or why it would
    refuse it (`plan_error`, with the error's class name in `plan_error_kind`). Raises what it
    raises about the program itself: ProgramNotFound, NotExecutable."""
    facts = {"plan_warnings": [], "plan_error": None, "plan_error_kind": None}
    try:
        plan = launch.plan_launch(path, env=env)
    except (ArchitectureMismatch, LoaderError) as error:
        facts.update(plan_error=error.message, plan_error_kind=type(error).__name__)
        return facts
    _, complaint = config.log_level(env)
    facts["plan_warnings"] = [message for level, message in plan.decisions
                              if level == "warn" and message != complaint]
    return facts


# ---------------------------------------------------------------------------------------------
# Findings: pure functions of the facts


def _findings(report: dict, env) -> list[Finding]:
    program = report["program"]
    host = report["host"]["system"]
    findings = list(_environment_findings(env))
    configured = set(_configured_systems(env, b"NIX_LD_"))
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
        findings.extend(finding for finding in _interpreter_findings(entry)
                        if program is None or finding.severity == PROBLEM)
    if program is not None:
        findings.extend(_program_findings(program, report, host))
    return findings


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
        if suffix in elf.SYSTEM_ABIS or (prefix == b"NIX_LD_" and suffix in ("LOG", "LIBRARY_PATH")):
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
            return Finding(WARNING, "loader", f"loader {entry['path']} ({source_phrase(entry['source'])}) has "
                           "no --library-path option: nixld passes the library path in LD_LIBRARY_PATH, which "
                           "the programs' children inherit",
                           launch.loader_advice(entry["source"], entry["system"], entry["machine"]))
        return None
    system = entry["system"]
    message = entry["error"]
    own_variable = f"NIX_LD_{system}"
    if _needs_own_variable(entry, host):
        if program is not None and program["system"] == system:
            message = (f"{program['path']} is a {program['class']}-bit {program['machine']} program and "
                       f"{own_variable} is unset: {message}")
        else:
            message = f"{own_variable} is unset, so {system} programs get no loader of their own: {message}"
    elif entry["source"] == "default" and entry["kind"] == "missing":
        message += (": programs whose own interpreter exists still start, foreign ones cannot"
                    if program is None else "")
    return Finding(PROBLEM, "loader", message, entry["fix"])


def machine_of(system: str) -> str:
    return system_header(system).machine_name


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
        origin = f"from {source}" if configured else "nix-ld's default"
        shown = f"library directory {directory['path']} ({origin})"
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


def _interpreter_findings(entry: dict):
    """A well-known interpreter path whose file cannot start anything is a problem; one that
    nothing is at, where nixld's shim could be, is a warning saying what the shim would fix."""
    if not entry["this_machine"] or entry["kind"] in ("loader", "nixld-shim", "nix-ld-shim"):
        return
    path, system = entry["path"], entry["system"]
    if entry["kind"] in ("other", "other-machine"):
        what = "a file for another machine" if entry["kind"] == "other-machine" else "neither a loader nor a shim"
        yield Finding(PROBLEM, "interpreter-paths", f"{path} is {what}: every program that names it fails to "
                      "start", f"remove it, or {shim_fix(path, system)}")
        return
    if entry["for_libc"] != "glibc" or system not in shims.SHIM_SYSTEMS:
        return  # the shim hands programs to NIX_LD, a glibc loader: not one for musl's path
    state = "does not exist" if entry["kind"] == "missing" else "is NixOS's stub-ld"
    yield Finding(WARNING, "interpreter-paths", f"{path} {state}: {system} programs that name it start only "
                  "through `nixld run`, where /proc/self/exe is the loader, and cannot start each other",
                  shim_fix(path, system))


def shim_fix(path: str, system: str | None) -> str:
    """How to put nixld's shim at the interpreter `path` of `system`'s programs."""
    try:
        shims.shim_path(system)
    except shims.ShimUnavailable:
        return f"put a shim at {path} (nix-ld's: programs.nix-ld.enable = true)"
    option = "environment.ldso32" if system == "i686_linux" and host_system() != system else "environment.ldso"
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
                          f"{loader['path']} ({source_phrase(loader['source'])}) is {loader['libc']}'s",
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
    if program["well_known_interpreter"]:
        fix = shim_fix(interpreter["path"], program["system"])
    else:
        fix = (f"start it through `nixld wrap --format binary {quoted}`, whose /proc/self/exe is the wrapper, "
               f"or point its interpreter at the shim: patchelf --set-interpreter \"$(nixld shim --path)\" {quoted}")
    if program["mentions_proc_self_exe"]:
        yield Finding(PROBLEM, "program", f"{path} mentions /proc/self/exe and its interpreter "
                      f"{interpreter['path']} {state}: started by `nixld run`, its /proc/self/exe is the loader, "
                      "so if it re-executes itself it starts the loader, not itself", fix)
    # The programs it starts name their own interpreters: most likely this system's usual one.
    usual = next((entry for entry in interpreters if entry["system"] == program["system"]
                  and entry["for_libc"] == (program["libc"] or "glibc")), None)
    if program["starts_programs"] and (usual is None or usual["kind"] not in STARTS_DIRECTLY):
        where = interpreter["path"] if usual is None else usual["path"]
        yield Finding(WARNING, "program", f"{path} starts other programs ({', '.join(program['starts_programs'])}) "
                      f"and {where} {state if usual is None else _state(usual)}: a foreign program it starts "
                      "cannot start (this system's own programs can)", shim_fix(where, program["system"]))


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
