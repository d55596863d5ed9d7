"""`nixld doctor --python PYTHON`: which of the Python's extension modules (and the libraries in
its site-packages loaded by themselves) its loader would not load, what they miss, and where
nixld's Python hook would find it; the fix is the hook, or the directory to add."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TIMEOUT = 120
REAL_LOADER = "/lib64/ld-linux-x86-64.so.2"
NIXLD = Path(sys.executable).with_name("nixld")


@pytest.fixture
def site(tmp_path, hook_tree):
    """A virtualenv of this Python whose site-packages holds the test modules of hook_tree:
    (its interpreter, its site-packages)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True, timeout=TIMEOUT)
    python = str(tmp_path / "venv/bin/python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout.strip()
    for entry in os.scandir(hook_tree.modules):
        (shutil.copytree if entry.is_dir() else shutil.copy)(entry.path, os.path.join(purelib, entry.name))
    return python, purelib


def doctor(*args: str, **variables: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "NIX_LD": REAL_LOADER, **variables}
    return subprocess.run([str(NIXLD), "doctor", *args], env=env, capture_output=True, text=True, timeout=TIMEOUT)


def report(*args: str, **variables: str) -> tuple[int, dict]:
    result = doctor("--json", *args, **variables)
    assert result.stderr == ""
    return result.returncode, json.loads(result.stdout)


def python_problems(document: dict) -> list[dict]:
    return [finding for finding in document["findings"] if finding["topic"] == "python"]


def test_it_lists_what_the_loader_would_not_load_and_what_the_hook_would_load_for_it(site, hook_tree):
    python, purelib = site
    status, document = report("--python", python, NIX_LD_LIBRARY_PATH=f"{hook_tree.d32}:{hook_tree.nix}")
    facts = document["python"]
    assert (facts["python"], facts["loader"], facts["system"]) == (python, REAL_LOADER, "x86_64_linux")
    assert facts["hook"] == {"site": purelib, "installed": False, "active": False}
    assert facts["library_dirs"] == {"source": "NIX_LD_LIBRARY_PATH", "directories": [hook_tree.d32, hook_tree.nix]}
    # hookext, bundled/_core, fallback/_speedups and mangled/_core; mangled.libs' and bundled.libs'
    # libraries are there too, but only as what the modules need.
    assert facts["shared_objects"] == 6
    chain = [{"soname": "libhookdep.so.1", "path": f"{hook_tree.nix}/libhookdep.so.1"},
             {"soname": "libhookleaf.so.1", "path": f"{hook_tree.nix}/libhookleaf.so.1"}]
    assert [(module["relative"], module["missing"], module["hook_loads"], module["still_missing"])
            for module in facts["failing"]] == [
        ("bundled/_core.abi3.so", ["libhookdep.so.1"], chain, []),
        ("fallback/_speedups.abi3.so", ["libhookdep.so.1"], chain, []),
        ("hookext.abi3.so", ["libhookdep.so.1"], chain, []),
    ]
    (problem,) = python_problems(document)
    assert problem["severity"] == "problem" and status == 1
    assert problem["message"] == (f"bundled/_core.abi3.so and 2 other shared objects of {python} cannot be loaded: "
                                  "its loader does not find libhookdep.so.1, which the NIX_LD library directories hold")
    assert problem["fix"] == (f"nixld python-hook install --python {python} (it loads them from {hook_tree.nix} when "
                              "they are missing, and leaves the environment alone)")


def test_the_python_object_has_every_documented_field(site, hook_tree):
    python, _ = site
    facts = report("--python", python, NIX_LD_LIBRARY_PATH=hook_tree.nix)[1]["python"]
    assert set(facts) == {"python", "executable", "version", "system", "machine", "loader", "site_packages", "hook",
                          "library_dirs", "shared_objects", "failing"}
    assert set(facts["failing"][0]) == {"path", "relative", "missing", "hook_loads", "still_missing"}


def test_with_the_hook_installed_what_it_finds_is_no_problem(site, hook_tree):
    python, _ = site
    assert subprocess.run([str(NIXLD), "python-hook", "install", "--python", python], capture_output=True,
                          timeout=TIMEOUT).returncode == 0
    status, document = report("--python", python, NIX_LD_LIBRARY_PATH=hook_tree.nix)
    assert document["python"]["hook"]["installed"] and document["python"]["hook"]["active"]
    assert len(document["python"]["failing"]) == 3
    assert python_problems(document) == []
    assert status == 0, document["findings"]


def test_what_no_nix_ld_directory_holds_is_a_problem_the_hook_cannot_fix(site, hook_tree):
    """nix_without_leaf holds libhookdep.so.1 but not the libhookleaf.so.1 it needs."""
    python, _ = site
    status, document = report("--python", python, NIX_LD_LIBRARY_PATH=hook_tree.nix_without_leaf)
    module = document["python"]["failing"][-1]
    assert module["hook_loads"] == [{"soname": "libhookdep.so.1", "path": f"{hook_tree.nix_without_leaf}/libhookdep.so.1"}]
    assert module["still_missing"] == [{"soname": "libhookleaf.so.1",
                                        "needed_by": [f"{hook_tree.nix_without_leaf}/libhookdep.so.1"]}]
    (problem,) = python_problems(document)
    assert status == 1
    assert problem["message"] == (f"bundled/_core.abi3.so and 2 other shared objects of {python} cannot be loaded, "
                                  "even with nixld's Python hook: libhookleaf.so.1 is in no NIX_LD library directory "
                                  f"(looked in {hook_tree.nix_without_leaf} (from NIX_LD_LIBRARY_PATH))")
    assert problem["fix"].startswith("add a directory that holds it to NIX_LD_LIBRARY_PATH (on NixOS: the package "
                                     "to programs.nix-ld.libraries); `nixld find-libs ")


def test_what_the_loader_finds_itself_is_not_missing(site, hook_tree):
    python, _ = site
    _, document = report("--python", python, LD_LIBRARY_PATH=hook_tree.nix)
    assert document["python"]["failing"] == [] and python_problems(document) == []


def test_the_text_report_has_a_python_section(site, hook_tree):
    python, purelib = site
    result = doctor("--python", python, NIX_LD_LIBRARY_PATH=hook_tree.nix)
    section = result.stdout.split("\nPython\n", 1)[1].split("\n\n", 1)[0].splitlines()
    release = ".".join(map(str, sys.version_info[:3]))
    assert section == [
        f"  {python}: CPython {release} for x86_64 (x86_64_linux), loader {REAL_LOADER}",
        f"  site-packages: {purelib} (nixld's Python hook: not installed)",
        "  shared objects: 6; 3 of them need libraries its loader does not find:",
        f"    bundled/_core.abi3.so: libhookdep.so.1; the hook finds them in {hook_tree.nix}",
        f"    fallback/_speedups.abi3.so: libhookdep.so.1; the hook finds them in {hook_tree.nix}",
        f"    hookext.abi3.so: libhookdep.so.1; the hook finds them in {hook_tree.nix}",
    ]


def test_a_python_doctor_cannot_ask_is_one_line_and_the_shells_status(tmp_path):
    for python, status in (("/bin/true", 126), (str(tmp_path / "missing"), 127)):
        result = doctor("--python", python)
        assert result.returncode == status and result.stderr.count("\n") == 1 and result.stdout == ""
        assert result.stderr.startswith(f"nixld: {python}")
