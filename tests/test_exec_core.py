"""The C exec core: built with the package, used by it, and leaving nothing behind on failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nixld import _execve

PROJECT = Path(__file__).resolve().parent.parent


def run_python(code: str) -> str:
    """Python started as the tests start it: from their scratch directory (see conftest.py)."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return result.stdout


def test_the_installed_package_execs_through_its_c_core():
    assert _execve.c_core_unavailable() is None
    assert run_python("from nixld._execve import c_core_unavailable; print(c_core_unavailable())") == "None\n"


def test_the_tests_start_python_where_it_imports_the_installed_package_not_the_source_tree():
    """From the project root, `python -m nixld` would import the checkout, which has no
    compiled core and no demo; the tests run from a scratch directory instead."""
    assert not Path.cwd().resolve().is_relative_to(PROJECT)
    location = Path(run_python("import nixld; print(nixld.__file__)").strip()).parent
    assert (location / "_demo" / "bin" / "hello-foreign").exists()


def test_a_failed_exec_raises_oserror_and_leaves_the_signal_dispositions_as_they_were():
    code = (
        "import signal\n"
        "from nixld._execve import execve\n"
        "try:\n"
        "    execve(b'/no/such/program', [b'x'], [(b'A', b'1')])\n"
        "except FileNotFoundError as error:\n"
        "    print(error.errno, signal.getsignal(signal.SIGPIPE) is signal.SIG_IGN,"
        " signal.getsignal(signal.SIGXFSZ) is signal.SIG_IGN)\n"
    )
    assert run_python(code) == "2 True True\n"


def test_a_successful_exec_gets_exactly_the_argv_and_environment_given():
    code = (
        "from nixld._execve import execve\n"
        "execve(b'/usr/bin/env', [b'env'], [(b'A', b'1'), (b'B', b'x=y'), (b'C', b'')])\n"
    )
    assert run_python(code) == "A=1\nB=x=y\nC=\n"


@pytest.mark.parametrize("argv, env", [([b"a\0b"], []), ([b"x"], [(b"A", b"1\0")])])
def test_an_embedded_nul_is_refused_before_any_exec(argv, env):
    with pytest.raises(ValueError, match="embedded null byte"):
        _execve.execve(b"/usr/bin/true", argv, env)
