"""What nixld prints, it prints in any locale: a path's bytes go out as they are on disk, whatever
the output's encoding, and no command ends in an encoding error (issue 12)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

# A name in UTF-8 (ö) with a byte that is no UTF-8 at all (\xff): both must come out as they are.
AWKWARD_NAME = b"t\xc3\xb6\xc3\xb6l-\xff"
ENCODINGS = ["ascii", "latin-1", "utf-8"]


def nixld(*args: bytes, cwd, encoding: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONIOENCODING=encoding, NIX_LD="/lib64/ld-linux-x86-64.so.2")
    return subprocess.run([sys.executable, "-m", "nixld", *args], cwd=cwd, env=env, capture_output=True)


@pytest.fixture
def awkward_program(tmp_path):
    """A real program (this machine's `true`) under AWKWARD_NAME."""
    shutil.copy("/bin/true", os.path.join(os.fsencode(tmp_path), AWKWARD_NAME))
    return tmp_path


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("command", [[b"inspect"], [b"inspect", b"--tree"], [b"doctor"], [b"find-libs"]])
def test_reports_name_the_program_by_its_own_bytes_in_any_encoding(awkward_program, command, encoding):
    result = nixld(*command, b"./" + AWKWARD_NAME, cwd=awkward_program, encoding=encoding)
    assert b"Traceback" not in result.stderr
    assert result.returncode in (0, 1), result.stderr
    assert AWKWARD_NAME in result.stdout


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_wrap_writes_its_file_and_says_so_in_any_encoding(awkward_program, encoding):
    result = nixld(b"wrap", b"-o", b"w\xc3\xb6" + AWKWARD_NAME, b"./" + AWKWARD_NAME, cwd=awkward_program,
                   encoding=encoding)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout.startswith(b"w\xc3\xb6" + AWKWARD_NAME + b": ")
    assert os.path.exists(os.path.join(os.fsencode(awkward_program), b"w\xc3\xb6" + AWKWARD_NAME))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_json_output_is_ascii_with_each_byte_kept_as_an_escape(awkward_program, encoding):
    result = nixld(b"inspect", b"--json", b"./" + AWKWARD_NAME, cwd=awkward_program, encoding=encoding)
    assert (result.returncode, result.stderr) == (0, b"")
    result.stdout.decode("ascii")  # JSON escapes whatever is not ASCII
    assert b'"./t\\u00f6\\u00f6l-\\udcff"' in result.stdout


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_an_error_about_the_file_is_one_line_in_any_encoding(tmp_path, encoding):
    result = nixld(b"inspect", b"./" + AWKWARD_NAME, cwd=tmp_path, encoding=encoding)
    assert result.returncode == 127
    assert result.stderr.count(b"\n") == 1 and b"Traceback" not in result.stderr
    assert result.stderr.startswith(b"nixld: ./t")
