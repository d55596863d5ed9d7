"""nixld's Nix packaging (package.nix, nix/shim.nix, nix/tests.nix, default.nix), evaluated and
built by real Nix into /nix/store against the stand-in nixpkgs of tests/nix/nixpkgs (see
tests/nixpkgs_standin.py), then checked file by file and run.

The shim package must be a drop-in for nixpkgs' nix-ld package (programs.nix-ld.package):
libexec/nix-ld, nix-support/ldpath, lib/tmpfiles.d/nix-ld.conf, and on x86_64 libexec/nix-ld32
for environment.ldso32; a few tens of KB that need nothing else. Building nixld and its shim
from nothing took 6 to 14 s here (two shared cores), the shim alone 1.4 s; a later run whose
sources have not changed reuses the store paths, and these tests then take about 5 s.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PROJECT, require
from nixpkgs_standin import (build_log, built, built_nixld, closure, evaluate, git_files, nix_tool,
                             nixld_expression, pkgs)
from nixpkgs_standin import build as nix_build

import nixld
from nixld import elf

TIMEOUT = 60
SHIM_FILES = {"libexec/nix-ld", "libexec/nix-ld32", "nix-support/ldpath", "lib/tmpfiles.d/nix-ld.conf"}


def nix_files() -> list[Path]:
    """Every Nix file of the project: the packaging, and the stand-ins the tests use."""
    return sorted([PROJECT / "flake.nix", PROJECT / "default.nix", PROJECT / "package.nix",
                   *(PROJECT / "nix").glob("*.nix"), *(PROJECT / "tests" / "nix").rglob("*.nix")])


def files_below(root: str) -> set[str]:
    return {os.path.relpath(os.path.join(directory, name), root)
            for directory, _, names in os.walk(root) for name in names}


def checkout_shim_build():
    """nixld/_shim_build.py of this checkout, loaded by its path as setup.py loads it."""
    spec = importlib.util.spec_from_file_location("checkout_shim_build", PROJECT / "nixld" / "_shim_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def packages() -> dict:
    return built_nixld()


@pytest.fixture(scope="module")
def store_loader() -> str:
    """The stand-in's glibc: a store copy of this machine's loader, what NIX_LD names on NixOS."""
    (glibc,) = built(f"{pkgs()}.glibc")
    return f"{glibc}/lib/ld-linux-x86-64.so.2"


def test_every_nix_file_parses():
    files = nix_files()
    assert {PROJECT / "flake.nix", PROJECT / "package.nix", PROJECT / "nix" / "module.nix"} <= set(files)
    for path in files:
        result = subprocess.run([nix_tool("nix-instantiate"), "--parse", str(path)], capture_output=True, text=True,
                                timeout=TIMEOUT)
        assert result.returncode == 0, f"{path}: {result.stderr}"


def test_the_shim_package_is_laid_out_as_nix_ld_is(packages):
    shim = packages["shim"]
    assert files_below(shim) == SHIM_FILES
    assert Path(shim, "nix-support/ldpath").read_text() == "/lib64/ld-linux-x86-64.so.2\n"
    assert Path(shim, "lib/tmpfiles.d/nix-ld.conf").read_text() == \
        f"L+ /lib64/ld-linux-x86-64.so.2 - - - - {shim}/libexec/nix-ld\n"
    for name in ("nix-ld", "nix-ld32"):
        assert os.access(Path(shim, "libexec", name), os.X_OK)


def test_the_shim_package_is_tens_of_kilobytes_and_needs_nothing_else(packages):
    shim = packages["shim"]
    assert closure(shim) == [shim]
    size = sum(os.path.getsize(Path(shim, name)) for name in SHIM_FILES)
    assert 10_000 < size < 100_000
    for name, system in (("nix-ld", "x86_64_linux"), ("nix-ld32", "i686_linux")):
        header = elf.read_header(os.fsencode(Path(shim, "libexec", name)))
        assert (header.system, header.interpreter) == (system, None)  # static: nothing to load it


def test_the_shims_are_what_setup_py_builds_from_the_same_sources(packages, tmp_path):
    """One set of compiler flags: the Nix build runs nixld/_shim_build.py, as setup.py does."""
    shim_build = checkout_shim_build()
    for name, system in (("nix-ld", "x86_64_linux"), ("nix-ld32", "i686_linux")):
        problem = shim_build.build_shim([shutil.which("gcc")], system, str(tmp_path / name))
        if system == "i686_linux":  # the x86-64 shim has been compared by then
            require(problem is None, f"this gcc cannot build the i686 shim ({problem})", package="gcc-multilib")
        assert problem is None
        assert (tmp_path / name).read_bytes() == Path(packages["shim"], "libexec", name).read_bytes(), name


def test_the_shims_run_programs_as_the_loader_started_by_hand(packages, store_loader):
    shim = Path(packages["shim"], "libexec")
    result = subprocess.run([shim / "nix-ld", "/usr/bin/echo", "through", "the shim"], env={"NIX_LD": store_loader},
                            capture_output=True, timeout=TIMEOUT)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", b"through the shim\n")
    for name, system in (("nix-ld", "x86_64_linux"), ("nix-ld32", "i686_linux")):
        result = subprocess.run([shim / name, "--version"], capture_output=True, timeout=TIMEOUT)
        assert (result.returncode, result.stdout) == (0, f"nixld shim {nixld.__version__} for {system} programs\n".encode())
    unset = subprocess.run([shim / "nix-ld", "/usr/bin/echo"], env={}, capture_output=True, timeout=TIMEOUT)
    assert unset.returncode == 126
    assert b"/run/current-system/sw/share/nix-ld/lib/ld.so (nix-ld's default) does not exist" in unset.stderr


def test_nixld_runs_from_the_store_with_its_c_core_and_the_shim_package_as_its_shims(packages, tmp_path):
    nixld_out, shim = packages["nixld"], packages["shim"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    version = subprocess.run([f"{nixld_out}/bin/nixld", "--version"], env=env, capture_output=True, text=True,
                             timeout=TIMEOUT)
    assert (version.returncode, version.stdout) == (0, f"nixld {nixld.__version__}\n")
    for system, name in (("x86_64_linux", "nix-ld"), ("i686_linux", "nix-ld32")):
        path = subprocess.run([f"{nixld_out}/bin/nixld", "shim", "--path", "--system", system], env=env,
                              capture_output=True, text=True, timeout=TIMEOUT).stdout.strip()
        assert path.startswith(f"{nixld_out}/")
        assert os.path.realpath(path) == f"{shim}/libexec/{name}"
    # The demo runs its foreign program through nixld run, hence the C core.
    demo = subprocess.run([f"{nixld_out}/bin/nixld", "demo"], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert demo.returncode == 0, demo.stderr
    assert f"{nixld_out}/lib/python" in demo.stdout and "greetings from libnixld-demo.so" in demo.stdout


def test_nixld_needs_its_python_dependencies_and_its_shim_at_run_time_and_not_its_build_tools(packages):
    version = evaluate(f"{pkgs()}.python3.pythonVersion")
    # Store paths are HASH-NAME-VERSION.
    dependencies = {path.split("-", 1)[1].rsplit("-", 1)[0] for path in closure(packages["nixld"])}
    assert {f"python{version}-cffi", f"python{version}-pycparser", f"python{version}-pyelftools",
            "nixld-shim", "nixld", "python3"} == dependencies


def test_the_versions_are_nixlds_own():
    names = evaluate(f"let nixld = {nixld_expression()}; in [ nixld.name nixld.shim.name nixld.tests.pytest.name ]")
    assert names == [f"nixld-{nixld.__version__}", f"nixld-shim-{nixld.__version__}",
                     f"nixld-tests-{nixld.__version__}"]


def test_nixlds_source_in_the_store_is_the_files_git_has_of_the_package(packages):
    source = evaluate(f"{nixld_expression()}.src")
    assert files_below(source) == git_files("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "demo", "nixld")


# What `pip install .`, `setup.py build_ext --inplace` and Python leave in a checkout.
LEFTOVERS = ["nixld/__pycache__/cli.cpython-311.pyc", "nixld/_exec.abi3.so", "nixld/_demo/bin/hello-foreign",
             "nixld/shim/nixld-shim-x86_64_linux", "nixld/shim/nixld-launcher-x86_64_linux", "build/lib/nixld/cli.py"]


def test_nothing_a_build_leaves_in_a_checkout_reaches_the_store(tmp_path):
    checkout = tmp_path / "checkout"
    wanted = git_files("package.nix", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "demo", "nixld")
    for name in [*wanted, *LEFTOVERS]:
        target = checkout / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name in wanted:
            shutil.copy(PROJECT / name, target)
        else:
            target.write_bytes(b"left behind by a build\n")
    source = evaluate(f"({pkgs()}.callPackage {checkout}/package.nix {{ }}).src")
    assert files_below(source) == wanted - {"package.nix"}


def test_the_shims_source_is_only_what_building_the_shim_reads(packages):
    source = evaluate(f"{nixld_expression()}.shim.src")
    assert files_below(source) == git_files("nixld/shim", "nixld/_shim_build.py", "nixld/elf.py",
                                            "nixld/__init__.py", "nix/build_shim.py")


def test_the_sandbox_tests_run_against_the_store_package_and_fail_as_pytest_does():
    """The check derivation (passthru.tests.pytest) with one test file: pytest runs it from the
    source with the store's nixld (a nixld without its C core would make conftest.py stop the
    run), and a pytest failure fails the build."""
    check = f"{pkgs()}.callPackage {PROJECT}/nix/tests.nix {{ nixld = {nixld_expression()}; testFiles = [ FILES ]; }}"
    (passed,) = built(check.replace("FILES", '"test_config.py"'))
    # The build's log, also when an earlier run made the store path; Nix gives builders a
    # terminal, so pytest colours it.
    log = re.sub(r"\x1b\[[0-9;]*m", "", build_log(passed))
    assert " passed in " in log and "tests/test_config.py ." in log
    failed = nix_build(check.replace("FILES", '"test_no_such_file.py"'))
    assert failed.returncode != 0
    assert "ERROR: file or directory not found: tests/test_no_such_file.py" in failed.stderr


def test_the_sandbox_tests_are_files_that_need_nothing_a_sandbox_lacks():
    files = evaluate(f"{nixld_expression()}.tests.pytest.testFiles")
    assert files
    for name in files:
        text = (PROJECT / "tests" / name).read_text()
        for needs in ("/lib64/", "/usr/bin/", "unshare", "nix-build", "nixld_script", "geteuid"):
            assert needs not in text, f"{name} needs {needs}, which a build sandbox does not have"
