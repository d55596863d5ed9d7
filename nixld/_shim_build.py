"""How the shim (nixld/shim/) is compiled: by setup.py at install time, and by the tests.

The shim is freestanding C linked as a static-pie ELF file with no C library and no
relocations: a program interpreter is started by the kernel before any loader exists, so
nothing may need relocating. Only the C compiler is needed, for every architecture it can
target (gcc -m32 builds the i686 shim without any 32-bit library).
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

SHIM_SOURCE = Path(__file__).with_name("shim")

# The compiler flags that make freestanding, relocation-free static-pie code.
FREESTANDING_FLAGS = [
    "-std=gnu11", "-Os", "-Wall", "-Wextra", "-Werror",
    "-ffreestanding", "-fno-builtin", "-fno-stack-protector", "-fPIE", "-fvisibility=hidden",
    "-fno-asynchronous-unwind-tables", "-fno-unwind-tables",
    # gcc would turn copy loops into calls of memcpy, which the shim defines but need not call.
    "-fno-tree-loop-distribute-patterns",
    "-nostdlib", "-static-pie", "-Wl,-z,noexecstack", "-Wl,-z,text",
]

# The shims for the programs each kernel (os.uname().machine) runs, its own first: Nix system
# -> the compiler flags that target it.
_SHIMS_BY_HOST = {
    "x86_64": {"x86_64_linux": [], "i686_linux": ["-m32"]},
    "aarch64": {"aarch64_linux": []},
}


def shim_name(system: str) -> str:
    """The file name of the shim for programs of `system`, in the package's shim directory."""
    return f"nixld-shim-{system}"


def shim_systems(host_machine: str | None = None) -> list[str]:
    """The Nix systems whose programs this machine's kernel runs and the shim supports."""
    return list(_SHIMS_BY_HOST.get(host_machine or platform.machine(), {}))


def shim_command(compiler: list[str], output: str, system_flags: list[str]) -> list[str]:
    """The command that compiles the shim into `output`."""
    sources = [str(SHIM_SOURCE / "shim.c"), str(SHIM_SOURCE / "contract.c")]
    return [*compiler, *system_flags, *FREESTANDING_FLAGS, "-o", output, *sources]


def build_shims(compiler: list[str], output_dir: str, host_machine: str | None = None) -> dict[str, str]:
    """Compile the shim for every system this machine runs into `output_dir`; returns the
    systems whose build failed, with the compiler's complaint (an i686 shim needs a compiler
    that targets i386, which any x86-64 gcc does)."""
    os.makedirs(output_dir, exist_ok=True)
    failures = {}
    for system, flags in _SHIMS_BY_HOST.get(host_machine or platform.machine(), {}).items():
        output = os.path.join(output_dir, shim_name(system))
        result = subprocess.run(shim_command(compiler, output, flags), capture_output=True, text=True)
        if result.returncode != 0:
            failures[system] = (result.stderr.strip().splitlines() or ["failed"])[-1]
    return failures
