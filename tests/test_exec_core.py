"""The C exec core: built with the package, used by it, and leaving nothing behind on failure."""

from __future__ import annotations

import signal
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


# What the kernel will apply, read from /proc/self/status in the process itself. Not
# signal.getsignal(): that returns CPython's own table of handlers, which the C core never
# touches, so it says SIG_IGN whatever the kernel's dispositions are.
SIGNALS_PYTHON_IGNORES = {signal.SIGPIPE, signal.SIGXFSZ}
PRINT_SIGIGN = (
    "print(next(line for line in open('/proc/self/status') if line.startswith('SigIgn:')), end='')\n"
)


def ignored_signals(sigign_line: str) -> set[int]:
    """The signals a `SigIgn:` line of /proc/PID/status names: a hex mask, bit N-1 is signal N."""
    field, mask = sigign_line.split()
    assert field == "SigIgn:"
    return {n for n in range(1, 4 * len(mask) + 1) if int(mask, 16) >> (n - 1) & 1}


def test_python_starts_with_sigpipe_and_sigxfsz_ignored_in_the_kernel():
    """The control for the tests below: without it, "still ignored" and "back at the default"
    would prove nothing."""
    assert SIGNALS_PYTHON_IGNORES <= ignored_signals(run_python(PRINT_SIGIGN))


def test_a_failed_exec_raises_oserror_and_leaves_the_kernels_signal_dispositions_as_they_were():
    code = (
        "from nixld._execve import execve\n"
        + PRINT_SIGIGN +
        "try:\n"
        "    execve(b'/no/such/program', [b'x'], [b'A=1'])\n"
        "except FileNotFoundError as error:\n"
        "    print(error.errno)\n"
        + PRINT_SIGIGN
    )
    before, errno, after = run_python(code).splitlines()
    assert errno == "2"
    assert ignored_signals(after) == ignored_signals(before)
    assert SIGNALS_PYTHON_IGNORES <= ignored_signals(after)


def test_after_a_failed_exec_writing_to_a_closed_pipe_raises_broken_pipe_rather_than_killing():
    code = (
        "import os\n"
        "from nixld._execve import execve\n"
        "try:\n"
        "    execve(b'/no/such/program', [b'x'], [])\n"
        "except FileNotFoundError:\n"
        "    pass\n"
        "read_end, write_end = os.pipe()\n"
        "os.close(read_end)\n"
        "try:\n"
        "    os.write(write_end, b'x')\n"
        "except BrokenPipeError:\n"
        "    print('EPIPE')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    # Killed by SIGPIPE, the process would end with -SIGPIPE and print nothing.
    assert (result.returncode, result.stdout, result.stderr) == (0, "EPIPE\n", "")


def test_a_successfully_execed_program_starts_with_sigpipe_and_sigxfsz_at_their_default():
    """This Python ignores both (see the control above); the program must not inherit that."""
    code = (
        "from nixld._execve import execve\n"
        "execve(b'/bin/sh', [b'sh', b'-c', b'grep ^SigIgn: /proc/self/status'],"
        " [b'PATH=/usr/bin:/bin'])\n"
    )
    assert not ignored_signals(run_python(code)) & SIGNALS_PYTHON_IGNORES


def test_a_successful_exec_gets_exactly_the_argv_and_environment_given():
    code = (
        "from nixld._execve import execve\n"
        "execve(b'/usr/bin/env', [b'env'], [b'A=1', b'B=x=y', b'C=', b'A=2', b'no-equals-sign'])\n"
    )
    assert run_python(code) == "A=1\nB=x=y\nC=\nA=2\nno-equals-sign\n"


@pytest.mark.parametrize("argv, env", [([b"a\0b"], []), ([b"x"], [b"A=1\0"])])
def test_an_embedded_nul_is_refused_before_any_exec(argv, env):
    with pytest.raises(ValueError, match="embedded null byte"):
        _execve.execve(b"/usr/bin/true", argv, env)
