"""This machine as a Nix Python sees it: libstdc++ and libgcc_s are nowhere its loader looks.

In a user and mount namespace, an overlay over /usr/lib/x86_64-linux-gnu without
libstdc++.so.6* and libgcc_s.so.1 (the interpreter itself needs neither); copies of them in a
directory that stands for nix-ld's (`nix_ld_lib`), which only NIX_LD_LIBRARY_PATH names. An
extension module from a manylinux wheel then fails to import exactly as under a Nix Python:
`ImportError: libstdc++.so.6: cannot open shared object file: No such file or directory`.

Used by tests/test_python_hook_world.py and by the survey of real wheels,
tests/python_hook_wheels.py. Commands run in the world through tests/nixos_world_runner.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

SYSTEM_LIBRARIES = "/usr/lib/x86_64-linux-gnu"
HIDDEN = ("libstdc++.so.6", "libgcc_s.so.1")
RUNNER = Path(__file__).parent / "nixos_world_runner.py"
# Mount the overlay, take the libraries out of it, then start the runner ($1 to $5).
START = ('mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3,userxattr" "$1" '
         '&& rm -f "$1"/libstdc++.so.6* "$1"/libgcc_s.so.1 && exec "$4" "$5" "$6"')

Result = namedtuple("Result", "returncode stdout stderr errno")


def why_not_here() -> str | None:
    """None when this machine can make the world (unshare, the libraries where Debian has
    them), else what is missing."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is missing"
    for name in HIDDEN:
        if not os.path.exists(os.path.join(SYSTEM_LIBRARIES, name)):
            return f"{SYSTEM_LIBRARIES}/{name} is missing"
    return None


class HiddenLibraries:
    """The world, with its own scratch directories under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nix_ld_lib = root / "nix-ld-lib"
        self.nix_ld_lib.mkdir(parents=True)
        for name in HIDDEN:  # the files themselves, under their sonames, as in a Nix store path
            shutil.copy(os.path.realpath(os.path.join(SYSTEM_LIBRARIES, name)), self.nix_ld_lib / name)
        self.upper, self.work = root / "upper", root / "work"
        self.upper.mkdir()
        self.work.mkdir()

    def run(self, *jobs: dict, timeout: float = 600) -> list[Result]:
        """Run the jobs ({"argv", "env", "input"}) in the world, in order, each with exactly its
        `env`; their results."""
        jobs_file = self.root / "jobs.json"
        jobs_file.write_text(json.dumps([{"argv": [os.fsdecode(arg) for arg in job["argv"]], "env": job["env"],
                                          "input": job.get("input")} for job in jobs]))
        outer = subprocess.run([shutil.which("unshare"), "-rm", "sh", "-c", START, "sh", SYSTEM_LIBRARIES,
                                str(self.upper), str(self.work), sys.executable, str(RUNNER), str(jobs_file)],
                               capture_output=True, timeout=timeout)
        if outer.returncode != 0:
            raise RuntimeError(f"the world could not be made: {outer.stderr.decode(errors='replace').strip()}")
        return [Result(report.get("returncode"), report.get("stdout", ""), report.get("stderr", ""),
                       report.get("errno")) for report in json.loads(outer.stdout)]


def wheel_directory() -> Path:
    """Where the tests find wheels: NIXLD_TEST_WHEELS, else the cache .ci/download-test-wheels
    fills."""
    given = os.environ.get("NIXLD_TEST_WHEELS")
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nixld" / "test-wheels"


def make_venv(python: str, target: Path, wheels: Path, *requirements: str) -> subprocess.CompletedProcess | None:
    """A virtualenv of `python` at `target` with `requirements` installed from the wheels in
    `wheels` alone (no index); None when done, else pip's failure."""
    subprocess.run([python, "-m", "venv", str(target)], check=True, timeout=300)
    result = subprocess.run([str(target / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index",
                             "--no-compile", "--find-links", str(wheels), "--only-binary=:all:", *requirements],
                            capture_output=True, text=True, timeout=900)
    return None if result.returncode == 0 else result
