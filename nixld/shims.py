"""Where nixld's shims are: the program interpreters built from nixld/shim/ at install time."""

from __future__ import annotations

import os

from nixld import elf
from nixld._shim_build import SHIM_SYSTEMS, launcher_name, shim_name
from nixld.errors import NixLdError


# Where setup.py builds them, inside the installed package.
_SHIM_DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim")


class ShimUnavailable(NixLdError):
    """No shim for that system was built into this installation."""


def host_system() -> str | None:
    """The Nix system of this machine's own programs ("x86_64_linux"), None where it has none."""
    systems = elf.host_systems()
    return systems[0] if systems else None


def built_systems() -> list[str]:
    """The systems whose shim this installation holds."""
    return [system for system in SHIM_SYSTEMS if os.path.exists(_shim_file(system))]


def shim_path(system: str | None = None) -> str:
    """The path of the shim for programs of `system` (a Nix system as in NIX_LD_{system}:
    "x86_64_linux", "i686_linux"; default: this machine's). Link a program with
    `-Wl,--dynamic-linker=PATH`, or put the file at the program's interpreter path.

    Raises ShimUnavailable when this installation has no shim for `system`.
    """
    system = system or host_system()
    built = built_systems()
    if system not in SHIM_SYSTEMS:
        raise ShimUnavailable(f"the shim supports {', '.join(SHIM_SYSTEMS)}, not {system!r}")
    path = _shim_file(system)
    if not os.path.exists(path):
        raise ShimUnavailable(
            f"this installation has no shim for {system} (it has: {', '.join(built) or 'none'}); "
            "nixld builds the shims for the systems its machine runs when it is installed"
        )
    return path


def _shim_file(system: str) -> str:
    return os.path.join(_SHIM_DIRECTORY, shim_name(system))


def launcher_path() -> str:
    """The compiled launcher that `nixld wrap --format binary` copies (built for this machine).

    Raises ShimUnavailable when this installation has none.
    """
    system = host_system()
    path = os.path.join(_SHIM_DIRECTORY, launcher_name(system))
    if not os.path.exists(path):
        raise ShimUnavailable(f"this installation has no compiled launcher for {system}; nixld builds it "
                              "when it is installed")
    return path
