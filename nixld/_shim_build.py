"""How the shim (nixld/shim/) is compiled: by setup.py at install time, and by the tests.

The shim is freestanding C linked as a static-pie ELF file with no C library and no
relocations: a program interpreter is started by the kernel before any loader exists, so
nothing may need relocating. Only a C compiler is needed (gcc or clang), for every architecture
it can target (gcc -m32 builds the i686 shim without any 32-bit library).
"""

from __future__ import annotations

import os

SHIM_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim")

# The compiler flags that make freestanding, relocation-free static-pie code.
FREESTANDING_FLAGS = [
    "-std=gnu11", "-Os", "-Wall", "-Wextra", "-Werror",
    "-ffreestanding", "-fno-builtin", "-fno-stack-protector", "-fPIE", "-fvisibility=hidden",
    "-fno-asynchronous-unwind-tables", "-fno-unwind-tables",
    "-nostdlib", "-static-pie", "-Wl,-z,noexecstack", "-Wl,-z,text",
    # Two loadable segments (code and constants; data) rather than four: fewer mappings for
    # the kernel to make at every start and to tear down at every exit.
    "-Wl,-z,noseparate-code", "-Wl,-z,norelro", "-Wl,--build-id=none",
]

# Every Nix system the shim has an arch/ layer for, with the flags that make a compiler for
# the system's machine target the system itself.
SYSTEM_FLAGS = {"x86_64_linux": [], "i686_linux": ["-m32"], "aarch64_linux": []}
SHIM_SYSTEMS = tuple(SYSTEM_FLAGS)


def shim_name(system: str) -> str:
    """The file name of the shim for programs of `system`, in the package's shim directory."""
    return f"nixld-shim-{system}"


def launcher_name(system: str) -> str:
    """The file name of the launcher built for `system`, beside the shims."""
    return f"nixld-launcher-{system}"


def shim_systems(host_machine: str | None = None) -> list[str]:
    """The Nix systems whose programs this machine's kernel runs and the shim supports, its
    own first."""
    return [system for system in _elf_module().host_systems(host_machine) if system in SYSTEM_FLAGS]


# The freestanding programs built from nixld/shim/: the shim itself, and the launcher that
# `nixld wrap --format binary` copies. Each: its main file, and what it shares.
PROGRAM_SOURCES = {"shim": ["shim.c", "load.c", "stack.c", "contract.c", "message.c", "runtime.c"],
                   "launcher": ["launcher.c", "load.c", "stack.c", "contract.c", "message.c", "runtime.c"]}


def nixld_version() -> str:
    """nixld's version, read from the package's __init__.py: setup.py loads this module by its
    path, before the package can be imported."""
    import re  # build time only: this module's names are also read when nixld starts

    with open(os.path.join(os.path.dirname(SHIM_SOURCE), "__init__.py"), encoding="utf-8") as stream:
        text = stream.read()
    return re.search(r'^__version__ = "([^"\\]+)"$', text, re.MULTILINE).group(1)


def shim_command(compiler: list[str], system: str, output: str, program: str = "shim") -> list[str]:
    """The command that compiles `program` ("shim" or "launcher") for `system` into `output`."""
    sources = [os.path.join(SHIM_SOURCE, name) for name in PROGRAM_SOURCES[program]]
    return [*compiler, *SYSTEM_FLAGS[system], *FREESTANDING_FLAGS, f'-DNIXLD_VERSION="{nixld_version()}"',
            "-o", output, *sources]


def build_shim(compiler: list[str], system: str, output: str, program: str = "shim") -> str | None:
    """Compile `program` ("shim" or "launcher") for `system` into `output` with `compiler` (a
    cross compiler will do); returns None, or what went wrong in one line."""
    import subprocess  # build time only: this module's names are also read when nixld starts

    result = subprocess.run(shim_command(compiler, system, output, program), capture_output=True, text=True)
    if result.returncode != 0:
        return (result.stderr.strip().splitlines() or ["failed"])[-1]
    if relocation_bytes(output):
        os.unlink(output)
        return f"the linked {program} needs relocations, which nothing would apply"
    return None


def build_shims(compiler: list[str], output_dir: str, host_machine: str | None = None) -> dict[str, str]:
    """Compile the shim for every system this machine runs, and the launcher for its own, into
    `output_dir`; returns what failed ("launcher" or a system), with the compiler's complaint
    (an i686 shim needs a compiler that targets i386, which any x86-64 gcc does)."""
    os.makedirs(output_dir, exist_ok=True)
    failures = {}
    systems = shim_systems(host_machine)
    for system in systems:
        problem = build_shim(compiler, system, os.path.join(output_dir, shim_name(system)))
        if problem:
            failures[system] = problem
    if systems:
        problem = build_shim(compiler, systems[0], os.path.join(output_dir, launcher_name(systems[0])), "launcher")
        if problem:
            failures["launcher"] = problem
    return failures


# Dynamic tags that give the size of relocations to apply at start-up.
_RELOCATION_SIZE_TAGS = {2: "DT_PLTRELSZ", 8: "DT_RELASZ", 18: "DT_RELSZ", 35: "DT_RELRSZ"}


def relocation_bytes(path: str) -> int:
    """How many bytes of relocations the ELF file at `path` asks its loader to apply."""
    elf = _elf_module()
    fd = elf.open_regular(os.fsencode(path))
    try:
        header = elf.read_header_from(fd)
        return sum(value for tag, value in elf.dynamic_entries(fd, header) if tag in _RELOCATION_SIZE_TAGS)
    finally:
        os.close(fd)


def _elf_module():
    """nixld.elf, or nixld/elf.py loaded by its path when setup.py runs this module before the
    package exists (importing nixld needs its C core); elf.py needs only the standard library."""
    if __package__:
        from nixld import elf

        return elf
    import importlib.util

    spec = importlib.util.spec_from_file_location("_nixld_elf", os.path.join(os.path.dirname(__file__), "elf.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
