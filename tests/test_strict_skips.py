"""A skipped test names the Debian package to install, and under NIXLD_TESTS_STRICT=1 (as in
.ci/run) it fails with that reason: CI must not pass while some tests quietly did not run.

Each test runs pytest on a small test file with a copy of this suite's conftest.py, in a
subprocess of its own, once with and once without the variable.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent

NEEDS_MUSL = """
import pytest
from conftest import require


def test_needs_musl_gcc():
    require(False, "musl-gcc is missing", package="musl-tools")


@pytest.mark.skip(reason="skipped by a marker")
def test_skipped_by_a_marker():
    pass


@pytest.mark.xfail(strict=True, reason="an expected failure")
def test_expected_to_fail():
    assert False


def test_passes():
    pass
"""


@pytest.fixture
def suite(pytester, monkeypatch):
    """Run pytest, with this suite's conftest.py, on NEEDS_MUSL; `strict` sets NIXLD_TESTS_STRICT."""
    for name in ("conftest.py", "crafted.py"):
        shutil.copy(TESTS / name, pytester.path)
    pytester.makepyfile(test_needs_musl=NEEDS_MUSL)

    def run(strict: str | None, *args: str):
        if strict is None:
            monkeypatch.delenv("NIXLD_TESTS_STRICT", raising=False)
        else:
            monkeypatch.setenv("NIXLD_TESTS_STRICT", strict)
        return pytester.runpytest_subprocess("-ra", "-p", "no:cacheprovider", *args)

    return run


@pytest.mark.parametrize("strict", [None, "0", ""])
def test_without_strict_mode_a_skip_is_a_skip_that_names_the_package(suite, strict):
    result = suite(strict)
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["SKIPPED * musl-gcc is missing (Debian package: musl-tools)"])


def test_in_strict_mode_a_skip_fails_the_run_and_shows_its_reason(suite):
    """A skip in a test is a failure; one before it (a marker, or a fixture such as
    i386_programs) is, as any failure in set-up, an error. An expected failure stays one."""
    result = suite("1")
    result.assert_outcomes(passed=1, failed=1, errors=1, xfailed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*NIXLD_TESTS_STRICT=1: a skipped test is a failure*"])
    # Each says why it was skipped, in its own section and on its line of the summary (which
    # pytest cuts to the terminal's width).
    result.stdout.fnmatch_lines([
        "*_ test_needs_musl_gcc _*",
        "Skipped: musl-gcc is missing (Debian package: musl-tools)",
        "*: skipped, and NIXLD_TESTS_STRICT=1 makes every skip a failure",
    ])
    result.stdout.fnmatch_lines([
        "*_ ERROR at setup of test_skipped_by_a_marker _*",
        "Skipped: skipped by a marker",
        "*test_needs_musl.py:*: skipped, and NIXLD_TESTS_STRICT=1 makes every skip a failure",
    ])
    result.stdout.fnmatch_lines(["ERROR *::test_skipped_by_a_marker - Skipped: skipped by a*",
                                 "FAILED *::test_needs_musl_gcc - Skipped: musl-gcc is*"])


def test_in_strict_mode_a_module_skipped_as_a_whole_is_an_error(suite, pytester):
    pytester.makepyfile(test_whole_module="""
        from conftest import require
        require(False, "musl-gcc is missing", package="musl-tools")
    """)
    result = suite("1", "test_whole_module.py")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*_ ERROR collecting test_whole_module.py _*",
                                 "Skipped: musl-gcc is missing (Debian package: musl-tools)"])


def test_a_strict_mode_value_other_than_0_or_1_stops_the_run(suite):
    result = suite("yes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*NIXLD_TESTS_STRICT='yes'*"])
