"""Programs built against musl, started through musl's loader: the library path and argv[0]
go on its command line too, and nothing reaches the environment.

musl's loader (its libc.so) takes `--library-path` and `--argv0` like glibc's, but stores
the option names without their leading `--`: nixld must tell the two apart from the loader
file. These tests need musl-gcc and musl's loader (Debian's musl-tools).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import PROGRAMS, require

MUSL_LOADER = "/lib/ld-musl-x86_64.so.1"
# Where a musl program built on NixOS names its loader: a path no machine here has.
FOREIGN_MUSL = "-Wl,--dynamic-linker=/nix/store/00000000000000000000000000000000-musl-1.2.3/lib/ld-musl-x86_64.so.1"
TIMEOUT = 60


@pytest.fixture(scope="module")
def musl(tmp_path_factory):
    """A musl libnixldtest.so in lib/, and in bin/ the foreign musl `probe` and `uses-library`
    (which needs libnixldtest.so and has no path of its own)."""
    musl_gcc = shutil.which("musl-gcc")
    require(musl_gcc is not None and os.path.exists(MUSL_LOADER), f"musl-gcc and musl's loader {MUSL_LOADER}",
            package="musl-tools")
    root = tmp_path_factory.mktemp("musl")
    (root / "lib").mkdir()
    (root / "bin").mkdir()
    jobs = [
        ["-shared", "-fPIC", '-DGREETING="musl libnixldtest"', "-o", root / "lib/libnixldtest.so",
         PROGRAMS / "nixldtest.c"],
        ["-o", root / "bin/probe", PROGRAMS / "probe.c", FOREIGN_MUSL],
    ]
    for job in jobs:
        subprocess.run([musl_gcc, "-O2", "-Wall", "-Werror", *map(str, job)], check=True, timeout=120)
    subprocess.run([musl_gcc, "-O2", "-Wall", "-Werror", "-o", str(root / "bin/uses-library"),
                    str(PROGRAMS / "uses_library.c"), f"-L{root / 'lib'}", "-lnixldtest", FOREIGN_MUSL],
                   check=True, timeout=120)
    return root


def nixld(*args, **variables) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "NIX_LD": MUSL_LOADER, **variables}
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "nixld"), *map(str, args)],
                          env=env, capture_output=True, timeout=TIMEOUT)


def test_a_musl_program_is_refused_by_the_kernel_without_nixld(musl):
    with pytest.raises(FileNotFoundError):
        subprocess.run([musl / "bin/probe", "argv"], timeout=TIMEOUT)


def test_the_library_path_reaches_musls_loader_on_its_command_line(musl):
    result = nixld("run", "-L", musl / "lib", musl / "bin/uses-library", "/usr/bin/env")
    assert result.returncode == 0, result.stderr
    greeting, *environment = result.stdout.splitlines()
    assert greeting == b"musl libnixldtest"
    assert not [entry for entry in environment if entry.startswith(b"LD_LIBRARY_PATH=")]
    assert result.stderr == b""


def test_the_plan_for_musls_loader_uses_both_options_and_warns_of_nothing(musl):
    result = nixld("run", "--dry-run", "--argv0", "chosen", musl / "bin/probe", NIX_LD_LIBRARY_PATH=str(musl / "lib"))
    plan = json.loads(result.stdout)
    assert (plan["mode"], plan["loader"], plan["env_changes"]) == ("library-path", MUSL_LOADER, {})
    assert plan["argv"][1:5] == ["--library-path", str(musl / "lib"), "--argv0", "chosen"]
    assert [d["message"] for d in plan["decisions"] if d["level"] == "warn"] == []
    assert any("a musl loader" in d["message"] for d in plan["decisions"])


def test_argv0_reaches_a_musl_program(musl):
    result = nixld("run", "--argv0", "chosen", musl / "bin/probe", "argv", "one")
    assert (result.returncode, result.stdout) == (0, b"chosen\nargv\none\n")


@pytest.mark.parametrize("callers", [None, "/callers/lib"])
def test_a_musl_program_and_its_child_see_the_callers_ld_library_path_exactly(musl, callers):
    variables = {"NIX_LD_LIBRARY_PATH": str(musl / "lib")}
    if callers is not None:
        variables["LD_LIBRARY_PATH"] = callers
    result = nixld("run", musl / "bin/probe", "env", "/usr/bin/env", **variables)
    assert result.returncode == 0, result.stderr
    own_view, nix_view, *child_view = result.stdout.splitlines()
    assert own_view == (b"LD_LIBRARY_PATH unset" if callers is None else f"LD_LIBRARY_PATH={callers}".encode())
    assert nix_view == f"NIX_LD_LIBRARY_PATH={musl / 'lib'}".encode()
    assert [entry for entry in child_view if entry.startswith(b"LD_LIBRARY_PATH=")] == (
        [] if callers is None else [f"LD_LIBRARY_PATH={callers}".encode()])
