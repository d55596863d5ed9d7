"""Shared test set-up: the hypothesis profile, and the C test programs, compiled once per run.

The programs' sources are in tests/programs/. "Foreign" builds name an interpreter that exists
on no machine, so the kernel refuses them exactly as NixOS refuses a binary built for another
distribution; only a loader started by hand (nixld) can run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("nixld", deadline=None, max_examples=200)
settings.load_profile("nixld")

PROGRAMS = Path(__file__).parent / "programs"

FOREIGN_INTERPRETER = "/nix/store/00000000000000000000000000000000-glibc-2.36/lib/ld-linux-x86-64.so.2"
FOREIGN = f"-Wl,--dynamic-linker={FOREIGN_INTERPRETER}"

# Each directory holds its own libnixldtest.so; the greeting tells which one was loaded.
GREETINGS = {"lib-a": "libnixldtest A", "lib-b": "libnixldtest B"}

LibraryDirs = namedtuple("LibraryDirs", "a b empty")

Built = namedtuple(
    "Built",
    "probe native_probe static_probe static_pie_probe uses_library dlopens_library library_dirs",
)


def _gcc() -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        # Not a skip: without the compiled programs nothing end-to-end is tested at all.
        pytest.fail("gcc is required to build the end-to-end test programs (tests/programs/*.c)",
                    pytrace=False)
    return gcc


def _compile_all(jobs: list[list[str]]) -> None:
    """Run the gcc command lines in parallel; fail the session loudly on the first error."""
    gcc = _gcc()
    running = [
        (job, subprocess.Popen([gcc, "-O2", "-Wall", "-Wextra", "-Werror", *job],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        for job in jobs
    ]
    failures = []
    for job, process in running:
        output, _ = process.communicate(timeout=120)
        if process.returncode != 0:
            failures.append(f"gcc {' '.join(job)}\n{output}")
    if failures:
        pytest.fail("compiling the test programs failed:\n" + "\n".join(failures), pytrace=False)


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    """Every test program, compiled once into a temporary directory (paths as str)."""
    root = tmp_path_factory.mktemp("programs")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    dirs = LibraryDirs(a=root / "lib-a", b=root / "lib-b", empty=root / "lib-empty")
    for directory in dirs:
        directory.mkdir()

    def source(name: str) -> str:
        return str(PROGRAMS / name)

    def output(name: str) -> str:
        return str(bin_dir / name)

    _compile_all(
        [["-o", output("probe"), source("probe.c"), FOREIGN],
         ["-o", output("native-probe"), source("probe.c")],
         ["-static", "-o", output("static-probe"), source("probe.c")],
         ["-static-pie", "-o", output("static-pie-probe"), source("probe.c")],
         ["-o", output("dlopens-library"), source("dlopens_library.c"), FOREIGN]]
        + [["-shared", "-fPIC", f'-DGREETING="{GREETINGS[d.name]}"',
            "-o", str(d / "libnixldtest.so"), source("nixldtest.c")] for d in (dirs.a, dirs.b)]
    )
    # Linked against lib-a's copy, without an rpath: at run time it must be found by search.
    _compile_all([["-o", output("uses-library"), source("uses_library.c"),
                   f"-L{dirs.a}", "-lnixldtest", FOREIGN]])
    return Built(
        probe=output("probe"),
        native_probe=output("native-probe"),
        static_probe=output("static-probe"),
        static_pie_probe=output("static-pie-probe"),
        uses_library=output("uses-library"),
        dlopens_library=output("dlopens-library"),
        library_dirs=LibraryDirs(*(str(d) for d in dirs)),
    )


@pytest.fixture(scope="session")
def probe(built) -> str:
    """tests/programs/probe.c built as a foreign program."""
    return built.probe


@pytest.fixture(scope="session")
def native_probe(built) -> str:
    """The same probe with this system's interpreter: a child the foreign probe can start."""
    return built.native_probe


@pytest.fixture(scope="session")
def static_probe(built) -> str:
    """The probe linked statically (ET_EXEC, no interpreter)."""
    return built.static_probe


@pytest.fixture(scope="session")
def static_pie_probe(built) -> str:
    """The probe linked as a static PIE (ET_DYN with an entry point and no interpreter)."""
    return built.static_pie_probe


@pytest.fixture(scope="session")
def uses_library(built) -> str:
    """A foreign program with libnixldtest.so as DT_NEEDED and no rpath."""
    return built.uses_library


@pytest.fixture(scope="session")
def dlopens_library(built) -> str:
    """A foreign program that dlopen()s "libnixldtest.so" by bare name."""
    return built.dlopens_library


@pytest.fixture(scope="session")
def library_dirs(built) -> LibraryDirs:
    """Directories a and b, each with its own libnixldtest.so, and an empty one."""
    return built.library_dirs


@pytest.fixture(scope="session")
def greetings() -> dict[str, str]:
    """What each directory's libnixldtest.so greets with, by directory name."""
    return dict(GREETINGS)


@pytest.fixture(scope="session")
def nixld_script() -> str:
    """The `nixld` console script installed next to the running interpreter."""
    script = os.path.join(os.path.dirname(sys.executable), "nixld")
    if not os.access(script, os.X_OK):
        pytest.fail(f"the nixld console script is not installed next to {sys.executable}",
                    pytrace=False)
    return script
