"""nixld: run unpatched, dynamically linked Linux binaries on NixOS, through the real loader.

The library path goes to the loader on its command line, so neither the program nor its
children see a modified environment.
"""

from nixld.errors import (
    ArchitectureMismatch,
    LaunchError,
    LoaderError,
    NixLdError,
    NotExecutable,
    ProgramNotFound,
    UsageError,
)
from nixld.loader import LaunchPlan, exec_foreign, plan_launch, run_foreign, spawn_foreign
from nixld.shims import ShimUnavailable, shim_path

__version__ = "0.1.0"

__all__ = [
    "ArchitectureMismatch",
    "LaunchError",
    "LaunchPlan",
    "LoaderError",
    "NixLdError",
    "NotExecutable",
    "ProgramNotFound",
    "ShimUnavailable",
    "UsageError",
    "exec_foreign",
    "inspect",
    "plan_launch",
    "run_foreign",
    "shim_path",
    "spawn_foreign",
]


def inspect(path, libs=(), *, env=None, ld=None):
    """What the program at `path` needs and where each library resolves under `nixld run`,
    without running it; returns a nixld.resolve.Inspection. Files are parsed once per process.

    Raises ProgramNotFound or NotExecutable when `path` is not a readable ELF file; where
    `nixld run` would refuse to start it (its loader, another machine), the inspection says so
    in `run_error` and `run_status`, and `exit_status` is the status `nixld inspect` gives.
    """
    from nixld.resolve import default_inspector  # start-up time: pyelftools, dataclasses

    return default_inspector().inspect(path, libs, env=env, ld=ld)
