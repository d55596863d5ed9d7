"""Compiles one shim for the Nix derivation of the shim (nix/shim.nix):

    python3 nix/build_shim.py COMPILER SYSTEM OUTPUT

SYSTEM is the Nix system whose programs the shim serves, as Nix spells it (x86_64-linux,
i686-linux, aarch64-linux). The command line, the flags and the check that the result needs no
relocations are nixld/_shim_build.py's, the ones setup.py uses: this only loads that module by
its path and calls it. It needs nothing but the standard library, so the derivation needs
Python to build the shim and none at run time.
"""

from __future__ import annotations

import importlib.util
import os
import sys

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _shim_build():
    """nixld/_shim_build.py, loaded by its path: importing the package would need its C core."""
    path = os.path.join(SOURCE_ROOT, "nixld", "_shim_build.py")
    spec = importlib.util.spec_from_file_location("_shim_build", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: build_shim.py COMPILER SYSTEM OUTPUT (SYSTEM as Nix spells it, e.g. x86_64-linux)",
              file=sys.stderr)
        return 2
    compiler, system, output = args
    shim_build = _shim_build()
    # nix-ld's rule: NIX_LD_{system} spells the Nix system with "_" for "-".
    nixld_system = system.replace("-", "_")
    if nixld_system not in shim_build.SHIM_SYSTEMS:
        supported = ", ".join("-".join(name.rsplit("_", 1)) for name in shim_build.SHIM_SYSTEMS)
        print(f"build_shim.py: the shim has no layer for {system} (it has: {supported})", file=sys.stderr)
        return 1
    problem = shim_build.build_shim([compiler], nixld_system, output)
    if problem:
        print(f"build_shim.py: the shim for {system} could not be built: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
