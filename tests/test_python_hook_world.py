"""numpy and pandas from PyPI's manylinux wheels, under a Python whose loader finds neither
libstdc++ nor libgcc_s (tests/hidden_libraries.py), as under a Nix Python on NixOS: the import
fails with the message people search for; with nixld's hook installed, numpy computes and pandas
sums, and neither the Python nor its children see LD_LIBRARY_PATH; doctor --python names what
fails and the directory that fixes it; after `nixld python-hook remove`, the import fails again.

In this Python and in 3.8, the oldest the hook supports. The wheels come from a directory
(.ci/download-test-wheels fills it; NIXLD_TEST_WHEELS names another), never from the network.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import require
from hidden_libraries import HIDDEN, HiddenLibraries, make_venv, wheel_directory, why_not_here

pytestmark = pytest.mark.nixos_world

CODE = """
import json, os, subprocess, sys
import numpy, pandas
matrix = numpy.arange(1, 7, dtype=float).reshape(2, 3)
frame = pandas.DataFrame({"a": [1, 2, 3], "b": [4.5, 5.5, 6.5]})
child = subprocess.run(["/usr/bin/env"], capture_output=True, text=True).stdout.splitlines()
print(json.dumps({"product": (matrix @ matrix.T).tolist(), "sum": frame.sum().tolist(),
                  "rolling": frame["a"].rolling(2).sum().tolist()[1:],
                  "environ": dict(os.environ), "child": dict(line.split("=", 1) for line in child)}))
"""


def environment(world) -> dict:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "NIX_LD_LIBRARY_PATH": str(world.nix_ld_lib)}


@pytest.fixture(scope="module")
def scenario(hook_python, tmp_path_factory, nixld_script):
    """The story, once per Python: the import without the hook, with it (and doctor's report
    in between), after remove; each step's result, by name."""
    why = why_not_here()
    require(why is None, f"a world without libstdc++ and libgcc_s ({why})", package="util-linux")
    root = tmp_path_factory.mktemp("wheel-world")
    wheels = wheel_directory()
    failure = make_venv(hook_python, root / "venv", wheels, "numpy", "pandas")
    require(failure is None, f"numpy and pandas wheels for {hook_python} in {wheels} "
                             f"({failure.stderr.strip().splitlines()[-1] if failure else ''})",
            how="run .ci/download-test-wheels PYTHON (as .ci/run does), or set NIXLD_TEST_WHEELS to a directory "
                "that holds them")
    python = str(root / "venv" / "bin" / "python")
    world = HiddenLibraries(root / "world")
    env = environment(world)

    def hook(action: str) -> None:
        subprocess.run([nixld_script, "python-hook", action, "--python", python], check=True, capture_output=True,
                       timeout=300)

    steps = {}
    steps["numpy alone"], steps["pandas alone"] = world.run({"argv": [python, "-c", "import numpy"], "env": env},
                                                            {"argv": [python, "-c", "import pandas"], "env": env})
    hook("install")
    steps["with the hook"], steps["doctor"] = world.run(
        {"argv": [python, "-c", CODE], "env": env},
        {"argv": [sys.executable, "-m", "nixld", "doctor", "--json", "--python", python], "env": env})
    hook("remove")
    steps["numpy after remove"], = world.run({"argv": [python, "-c", "import numpy"], "env": env})
    steps["world"] = world
    steps["python"] = python
    return steps


def loader_message(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if "cannot open shared object file" in line)


def test_without_the_hook_numpy_and_pandas_fail_for_want_of_libgcc_s_or_libstdcxx(scenario):
    numpy = scenario["numpy alone"]
    assert numpy.returncode == 1, numpy.stderr
    assert any(f"{name}: cannot open shared object file: No such file or directory" in loader_message(numpy.stderr)
               for name in HIDDEN), numpy.stderr
    # pandas words numpy's failure its own way, and some releases (2.3 with numpy 2.0, on 3.9)
    # drop the loader's line: where it is passed on, it is the same familiar one.
    pandas = scenario["pandas alone"]
    assert pandas.returncode == 1 and "ImportError" in pandas.stderr and "numpy" in pandas.stderr, pandas.stderr
    passed_on = [line for line in pandas.stderr.splitlines() if "cannot open shared object file" in line]
    assert all(any(f"{name}: cannot open shared object file" in line for name in HIDDEN) for line in passed_on)


def test_with_the_hook_numpy_computes_and_pandas_sums(scenario):
    result = scenario["with the hook"]
    assert (result.returncode, result.stderr) == (0, "")
    answer = json.loads(result.stdout)
    assert answer["product"] == [[14.0, 32.0], [32.0, 77.0]]
    assert answer["sum"] == [6.0, 16.5]
    assert answer["rolling"] == [3.0, 5.0]  # pandas' window aggregations: its C++ extension module


def test_with_the_hook_neither_the_python_nor_its_children_see_ld_library_path(scenario):
    answer = json.loads(scenario["with the hook"].stdout)
    expected = environment(scenario["world"])
    assert answer["environ"] == expected
    assert answer["child"] == expected


def test_doctor_names_what_fails_and_the_directory_that_fixes_it(scenario):
    result = scenario["doctor"]
    document = json.loads(result.stdout)
    python = document["python"]
    failing = {module["relative"].split("/")[0] for module in python["failing"]}
    assert {"numpy", "pandas"} <= failing
    nix_ld_lib = str(scenario["world"].nix_ld_lib)
    for module in python["failing"]:
        assert set(module["missing"]) <= set(HIDDEN) and module["still_missing"] == []
        assert {load["path"] for load in module["hook_loads"]} <= {f"{nix_ld_lib}/{name}" for name in HIDDEN}
    # Installed when doctor looked: what it finds is no problem.
    assert python["hook"]["installed"] and [f for f in document["findings"] if f["topic"] == "python"] == []


def test_after_remove_the_import_fails_again(scenario):
    result = scenario["numpy after remove"]
    assert result.returncode == 1
    assert loader_message(result.stderr) == loader_message(scenario["numpy alone"].stderr)
