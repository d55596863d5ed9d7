"""Real Nix against the stand-in nixpkgs of tests/nix/, for the tests of nixld's Nix files
(tests/test_nix_*.py).

There is no nixpkgs on these machines: tests/nix/nixpkgs stands in for the parts of it that
nixld's Nix files use, built from this machine's compiler, Python and Python packages (what this
module finds and hands it as `host`), and tests/nix/nixos for the NixOS modules they meet.
Debian's nix-bin (Nix 2.8) evaluates and builds them, as root, without a daemon, build users or
a sandbox, and offline. Nix reuses a store path whose inputs have not changed; within a test
run each build is made once (functools.lru_cache).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from conftest import require

PROJECT = Path(__file__).resolve().parent.parent
STANDIN = PROJECT / "tests" / "nix" / "nixpkgs"
NIXOS = PROJECT / "tests" / "nix" / "nixos"
TIMEOUT = 600

# As root with Debian's nix-bin: no build users exist, Debian's default is a sandbox (which
# would hide this machine's compiler from the stand-in), and there is no binary cache to ask.
BUILD_OPTIONS = ["--option", "sandbox", "false", "--option", "build-users-group", "",
                 "--option", "substituters", ""]
FLAKES = ["--extra-experimental-features", "nix-command flakes"]

# The Python packages nixld's Nix files name, and pip, with which the stand-in installs.
PYTHON_PACKAGES = ("cffi", "hypothesis", "pip", "pyelftools", "pytest", "setuptools")

LOADERS = {"x86_64-linux": "/lib64/ld-linux-x86-64.so.2", "i686-linux": "/lib/ld-linux.so.2"}


def nix_tool(name: str) -> str:
    """The path of the Nix command `name`; skips (naming nix-bin) where Nix is missing."""
    path = shutil.which(name)
    require(path is not None, name, package="nix-bin")
    require(os.geteuid() == 0, "root, for Nix without a daemon or build users", how="run as root, as CI does")
    return path


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _python_packages() -> dict:
    """The distributions installed for this Python that PYTHON_PACKAGES need, with the
    dependencies each has here: {name: {"name", "version", "dependencies"}}."""
    from packaging.requirements import Requirement  # pytest's own dependency

    installed = {_canonical(d.metadata["Name"]): d for d in importlib.metadata.distributions()}
    found = {}
    waiting = list(PYTHON_PACKAGES)
    while waiting:
        name = waiting.pop()
        if name in found:
            continue
        require(name in installed, f"the Python package {name} in the test environment",
                how="pip install '.[test]'")
        distribution = installed[name]
        dependencies = []
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                dependencies.append(_canonical(requirement.name))
        found[name] = {"name": distribution.metadata["Name"], "version": distribution.version,
                       "dependencies": sorted(set(dependencies))}
        waiting.extend(dependencies)
    return found


@functools.lru_cache(maxsize=None)
def host_json() -> str:
    """What the stand-in is built from on this machine, as the JSON its `host` argument takes."""
    base = getattr(sys, "_base_executable", sys.executable)
    return json.dumps({
        "python": os.path.realpath(base),
        "pythonVersion": "%d.%d" % sys.version_info[:2],
        "pythonPath": sysconfig.get_paths()["purelib"],
        "packages": _python_packages(),
        "loaders": {system: os.path.realpath(path) for system, path in LOADERS.items() if os.path.exists(path)},
        "hostPath": "/usr/bin:/bin",
    }, sort_keys=True)


def pkgs(system: str = "x86_64-linux") -> str:
    """A Nix expression for the stand-in nixpkgs of `system`, in a scope that has `host`."""
    return f'(import {STANDIN} {{ system = "{system}"; inherit host; }})'


def _arguments(expression: str) -> list[str]:
    return ["--argstr", "hostJson", host_json(), "-E",
            f"{{ hostJson }}: let host = builtins.fromJSON hostJson; in {expression}"]


def evaluate(expression: str):
    """The value of `expression` (in which `host` is bound), evaluated strictly, from JSON."""
    result = subprocess.run([nix_tool("nix-instantiate"), "--eval", "--strict", "--json", *_arguments(expression)],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def evaluation_error(expression: str) -> str:
    """The error evaluating `expression` gives (the test fails if it gives none)."""
    result = subprocess.run([nix_tool("nix-instantiate"), "--eval", "--strict", "--json", *_arguments(expression)],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode != 0, result.stdout
    return result.stderr


def build(expression: str) -> subprocess.CompletedProcess:
    """nix-build of `expression` (in which `host` is bound), without out-links: its store paths
    on stdout, one a line, and the build logs on stderr."""
    return subprocess.run([nix_tool("nix-build"), *BUILD_OPTIONS, "--no-out-link", *_arguments(expression)],
                          capture_output=True, text=True, timeout=TIMEOUT)


def build_log(path: str) -> str:
    """The log of the build that made the store path `path`, which Nix keeps (nix-store -l)."""
    result = subprocess.run([nix_tool("nix-store"), "--read-log", path], capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    return result.stdout


def built(expression: str) -> list[str]:
    """The store paths `expression` builds into; the test fails with Nix's log if it fails."""
    result = build(expression)
    assert result.returncode == 0, result.stderr[-6000:]
    return result.stdout.split()


def nixld_expression(system: str = "x86_64-linux") -> str:
    """nixld as default.nix gives it, with the stand-in nixpkgs as `pkgs`."""
    return f"(import {PROJECT}/default.nix {{ pkgs = {pkgs(system)}; }})"


@functools.lru_cache(maxsize=None)
def built_nixld() -> dict:
    """nixld and its shim, built once per test run: {"nixld": store path, "shim": store path,
    "seconds": how long nix-build took (nothing to build: a store path reused)}."""
    import time

    start = time.monotonic()
    nixld, shim = built(f"let nixld = {nixld_expression()}; in [ nixld nixld.shim ]")
    return {"nixld": nixld, "shim": shim, "seconds": time.monotonic() - start}


def closure(path: str) -> list[str]:
    """The store paths `path` refers to, itself included (nix-store -qR)."""
    result = subprocess.run([nix_tool("nix-store"), "-qR", path], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def git_files(*paths: str) -> set[str]:
    """The files of the checkout below `paths` that git has or would have (tracked, or new and
    not ignored): what a clone, hence a flake, holds."""
    git = shutil.which("git")
    require(git is not None, "git, to list the checkout's files", package="git")
    result = subprocess.run([git, "ls-files", "--cached", "--others", "--exclude-standard", "--", *paths],
                            cwd=PROJECT, capture_output=True, text=True, timeout=TIMEOUT)
    require(result.returncode == 0, f"a git checkout at {PROJECT} ({result.stderr.strip()})", how="run from a clone")
    return {name for name in result.stdout.splitlines() if (PROJECT / name).exists()}


def nixos(modules: str, system: str = "x86_64-linux") -> str:
    """A Nix expression for the stand-in NixOS configuration of `modules` (a Nix list), whose
    `config` and `failedAssertions` a test reads."""
    return f"(import {NIXOS} {{ pkgs = {pkgs(system)}; modules = {modules}; }})"
