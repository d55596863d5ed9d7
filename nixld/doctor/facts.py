"""The facts `nixld doctor` gathers: what each loader, library directory and well-known
interpreter path is, and what a PROGRAM needs and does, as plain, JSON-ready dicts."""

from __future__ import annotations

import filecmp
import os
import re

from nixld import config, elf, shims
from nixld import loader as launch
from nixld.errors import ArchitectureMismatch, LoaderError, display

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

# glibc's loader says which release it is ("ld.so (GNU libc) stable release version 2.40.");
# musl keeps its version as a string of its own ("1.2.3").
_GLIBC_RELEASE = re.compile(rb"ld\.so \(([^)\0\n]*)\) (?:stable |development )?release version "
                            rb"([0-9]+\.[0-9]+(?:\.[0-9]+)?)")
_MUSL_VERSION = re.compile(rb"(?<=\0)([0-9]+\.[0-9]+\.[0-9]+(?:[-+_][0-9A-Za-z.+_-]*)?)(?=\0)")

# Interpreter kinds under which a program starts by itself, so /proc/self/exe is the program
# and the programs it starts start too.
STARTS_DIRECTLY = ("loader", "nixld-shim", "nix-ld-shim")


def host_system() -> str | None:
    """The Nix system of this machine's own programs, None for a machine Nix has no name for."""
    return shims.host_system()


def system_header(system: str) -> elf.ElfHeader:
    """A program header standing for every program of `system`, to check a loader against."""
    elf_class, little_endian, machine = elf.SYSTEM_ABIS[system]
    return elf.ElfHeader(elf_class, little_endian, machine, elf.ET_DYN, 0, None, None, ())


def machine_of(system: str) -> str:
    """The machine `system`'s programs are for, as `uname -m` says it."""
    return system_header(system).machine_name


def loader_systems(env, program_system: str | None) -> list[str]:
    """The systems whose loader the report shows: this machine's, the other one its kernel
    runs, the program's and any that a NIX_LD_{system} variable names."""
    # The host's own, then the other systems its kernel runs natively (i686 on x86-64), each
    # with a loader of its own.
    systems = [*elf.host_systems(), program_system, *configured_systems(env, b"NIX_LD")]
    return [system for system in dict.fromkeys(systems) if system is not None]


def configured_systems(env, base: bytes) -> list[str]:
    """The Nix systems for which a variable `base`_{system} is set (in either spelling)."""
    return [system for system in elf.SYSTEM_ABIS
            if config.setting(env, config.system_variable(env, base, system)) is not None]


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
    candidates = [] if system is None else [config.system_variable(env, b"NIX_LD", system).decode()]
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
    if not facts["usable"] and needs_own_variable(facts, host_system()):
        # NIX_LD serves this machine's programs; another system's need a variable of their own.
        facts["fix"] = launch.loader_advice(f"NIX_LD_{system}", system, header.machine_name)
        if not elf.host_runs(header):
            facts["fix"] += " and an emulator (binfmt_misc) for it"
    return facts


def needs_own_variable(entry: dict, host: str | None) -> bool:
    """True when the loader of another system than this machine's came from NIX_LD or a
    default, and NIX_LD_{system} is what to set."""
    system = entry["system"]
    return (system is not None and system != host
            and entry["source"].encode() not in config.system_variables(b"NIX_LD", system))


def identify(path: bytes, expected: elf.ElfHeader, source: str = "interpreter", program: bytes = b"") -> dict:
    """What the file at `path` is, as the loader of programs like `expected`'s: `kind` is
    "loader", "missing", "nixld-shim", "nix-ld-shim" (another shim that reads NIX_LD),
    "stub-ld" (NixOS's stub, which only explains the failure), "other-machine" (an ELF file of
    another machine) or "other"; for a loader, its C library, version and launch options.
    `error` says why it is not a usable loader, `fix` what to change (for a loader chosen from
    `source`)."""
    shown = f"loader {display(path)} ({config.source_phrase(source)})"
    facts = {"exists": os.path.exists(path), "target": None, "kind": "missing", "machine": None, "libc": None,
             "libc_version": None, "libc_release": None, "options": [], "shim": None, "error": None,
             "fix": launch.loader_advice(source, expected.system, expected.machine_name)}
    if os.path.islink(path):
        facts["target"] = os.fsdecode(os.path.realpath(path))
    # The verdict is `nixld run`'s own; what follows only tells what the file is instead.
    try:
        libc, options = launch.check_loader(path, source, expected.system, program, expected)
    except LoaderError as error:
        refusal = error
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
    facts["error"] = f"{shown} {refusal.reason}"
    facts["fix"] = refusal.advice or facts["fix"]
    facts["kind"] = _shim_kind(path, header)
    return facts


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
        if not elf.shared_object_name(entry.name):
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


def plan_facts(path: bytes, env) -> dict:
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
