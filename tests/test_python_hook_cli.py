"""`nixld python-hook install|remove|status [--python PYTHON]`: what each puts into a Python
environment's site-packages, takes out of it and says of it, and how each refuses, in one line,
what it cannot do, leaving nothing half-done."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require

from nixld import __version__

TIMEOUT = 120
FILES = ["_nixld_python_hook.py", "_nixld_python_hook_rescue.py", "nixld-python-hook.pth"]


class Venv:
    """A virtualenv without pip: its interpreter, site-packages and .pyc tag."""

    def __init__(self, python: str, root: Path) -> None:
        subprocess.run([python, "-m", "venv", "--without-pip", str(root)], check=True, timeout=TIMEOUT)
        self.python = str(root / "bin" / "python")
        answer = subprocess.run([self.python, "-c", "import sys, sysconfig; print(sysconfig.get_path('purelib'));"
                                 "print(sys.implementation.cache_tag); print(*sys.version_info[:3], sep='.')"],
                                capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout.split()
        self.site, self.cache_tag, self.release = Path(answer[0]), answer[1], answer[2]

    def listing(self) -> set[str]:
        """Every file and directory under site-packages, relative to it."""
        return {str(path.relative_to(self.site)) for path in self.site.rglob("*")}


@pytest.fixture
def venv(tmp_path) -> Venv:
    return Venv(sys.executable, tmp_path / "venv")


def nixld(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items() if not key.startswith(("NIX_LD", "LD_LIBRARY_PATH"))}
    return subprocess.run([sys.executable, "-m", "nixld", *args], env=dict(base, **(env or {})), cwd=cwd,
                          capture_output=True, text=True, timeout=TIMEOUT)


def assert_one_line(result, status: int, *naming: str) -> None:
    assert result.returncode == status, result.stderr
    assert result.stderr.startswith("nixld: ") and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""
    for name in naming:
        assert name in result.stderr


def test_install_status_and_remove_in_the_pythons_the_hook_is_for(hook_python, tmp_path):
    """Remove leaves site-packages exactly as install found it; the .pyc files are the
    Python's own, made at install (a Python that writes none would compile the hook at every
    start)."""
    venv = Venv(hook_python, tmp_path / "venv")
    env = {"NIX_LD_LIBRARY_PATH": "/opt/libs,/more/libs"}
    before = venv.listing()
    where = "/opt/libs, /more/libs (from NIX_LD_LIBRARY_PATH)"
    python = f"{venv.python} (CPython {venv.release})"

    status = nixld("python-hook", "status", "--python", venv.python, env=env)
    assert (status.returncode, status.stderr) == (1, "")
    assert status.stdout == (f"{venv.site}: nixld's Python hook is not installed, for {python}\n"
                             f"  `nixld python-hook install --python {venv.python}` installs it; it would look in "
                             f"{where}\n")

    installed = nixld("python-hook", "install", "--python", venv.python, env=env)
    assert (installed.returncode, installed.stderr) == (0, "")
    assert installed.stdout == (f"{venv.site}: nixld's Python hook installed for {python}; when a library is "
                                f"missing, it looks in {where}\n")
    pycs = [f"__pycache__/{name[:-3]}.{venv.cache_tag}.pyc" for name in FILES[:2]]
    assert venv.listing() - before == set(FILES + pycs) | ({"__pycache__"} - before)
    assert (venv.site / "nixld-python-hook.pth").read_text() == (
        f"# nixld {__version__}'s Python hook; `nixld python-hook remove --python PYTHON` takes it away\n"
        "import _nixld_python_hook; _nixld_python_hook.activate()\n")

    status = nixld("python-hook", "status", "--python", venv.python, env=env)
    assert (status.returncode, status.stderr) == (0, "")
    assert status.stdout == (f"{venv.site}: nixld's Python hook is installed (this nixld's), for {python}; "
                             f"loaded at start-up\n  when a library is missing, it looks in {where}\n")

    again = nixld("python-hook", "install", "--python", venv.python, env=env)
    assert again.returncode == 0 and again.stdout.startswith(f"{venv.site}: nixld's Python hook updated for ")
    assert venv.listing() - before == set(FILES + pycs) | ({"__pycache__"} - before)

    removed = nixld("python-hook", "remove", "--python", venv.python)
    assert (removed.returncode, removed.stderr) == (0, "")
    assert removed.stdout == (f"{venv.site}: nixld's Python hook removed (nixld-python-hook.pth, "
                              "_nixld_python_hook.py, _nixld_python_hook_rescue.py, and the .pyc files)\n")
    assert venv.listing() == before
    nothing = nixld("python-hook", "remove", "--python", venv.python)
    assert (nothing.returncode, nothing.stdout) == (0, f"{venv.site}: nixld's Python hook is not installed; "
                                                       "nothing to remove\n")


def test_without_python_it_is_the_python_running_nixld():
    import sysconfig

    result = nixld("python-hook", "status")
    assert result.returncode == 1
    assert result.stdout.startswith(f"{sysconfig.get_path('purelib')}: nixld's Python hook is not installed, "
                                    f"for {sys.executable} (CPython ")


def test_status_names_the_directories_of_the_pythons_own_system(venv):
    result = nixld("python-hook", "status", "--python", venv.python,
                   env={"NIX_LD_LIBRARY_PATH_x86_64_linux": "/specific", "NIX_LD_LIBRARY_PATH": "/generic"})
    assert "it would look in /specific (from NIX_LD_LIBRARY_PATH_x86_64_linux)\n" in result.stdout
    result = nixld("python-hook", "status", "--python", venv.python)
    assert result.stdout.endswith("it would look in /run/current-system/sw/share/nix-ld/lib (nix-ld's default; "
                                  "NIX_LD_LIBRARY_PATH_x86_64_linux and NIX_LD_LIBRARY_PATH are unset)\n")


def fake_python(path: Path, answer: str) -> str:
    """A program that answers the question as a Python would (`answer`, a JSON document)."""
    path.write_text(f"#!/bin/sh\necho 'nixld-python-hook-answer {answer}'\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("answer, says", [
    ('{"version": [2, 7, 18], "implementation": "cpython"}', "is Python 2.7.18: the hook needs Python 3.8 or newer"),
    ('{"version": [3, 7, 17], "implementation": "cpython"}', "is Python 3.7.17: the hook needs Python 3.8 or newer"),
    ('{"version": [3, 10, 14], "implementation": "pypy"}', "is PyPy 3.10.14: the hook is for CPython (3.8 or newer)"),
    ('{"versio', "is not a Python: asked for its version and site-packages, it said nothing (exit status 0)"),
])
def test_a_python_the_hook_is_not_for_is_refused(tmp_path, answer, says):
    python = fake_python(tmp_path / "python", answer)
    for action in ("install", "remove", "status"):
        assert_one_line(nixld("python-hook", action, "--python", python), 126, f"{python} {says}")


def test_a_program_that_is_not_a_python_is_refused():
    assert_one_line(nixld("python-hook", "install", "--python", "/bin/true"), 126, "/bin/true is not a Python: asked "
                    "for its version and site-packages, it said nothing (exit status 0)")


def test_a_python_that_cannot_start_is_refused_with_the_last_thing_it_said(tmp_path):
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'python: error while loading shared libraries: libpython3.11.so.1.0: cannot "
                      "open shared object file: No such file or directory' >&2\nexit 127\n")
    broken.chmod(0o755)
    assert_one_line(nixld("python-hook", "install", "--python", str(broken)), 126, f"{broken} is not a Python: asked "
                    "for its version and site-packages, it answered: python: error while loading shared libraries: "
                    "libpython3.11.so.1.0: cannot open shared object file")


def test_a_real_python_too_old_is_refused():
    """pyenv's Python 2.7, if there is one: the question is asked in Python 2's syntax too."""
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    old = sorted(versions.glob("2.7.*/bin/python"))
    require(bool(old), "a Python 2.7", how="`pyenv install 2.7`, as CI has")
    assert_one_line(nixld("python-hook", "install", "--python", str(old[-1])), 126,
                    f"{old[-1]} is Python 2.7.")


def test_a_site_packages_that_cannot_be_written_is_refused_and_left_as_it_is(venv):
    """Read-only, as a Nix Python's own is in the store: bound read-only over itself in a user and
    mount namespace (root writes to any directory its mode forbids)."""
    unshare = shutil.which("unshare")
    require(unshare is not None, "unshare", package="util-linux")
    before = venv.listing()
    script = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"')
    result = subprocess.run([unshare, "-rm", "sh", "-c", script, "sh", str(venv.site), sys.executable, "-m", "nixld",
                             "python-hook", "install", "--python", venv.python],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert_one_line(result, 1, f"cannot write to {venv.site}, the site-packages of {venv.python}: Read-only file "
                               "system; make a virtualenv of it")
    assert venv.listing() == before


def test_an_install_that_fails_half_way_leaves_nothing_behind(venv):
    """The modules are written, then compiling them fails (here, as __pycache__ is a file):
    the modules written are taken back."""
    (venv.site / "__pycache__").write_text("not a directory\n")
    before = venv.listing()
    result = nixld("python-hook", "install", "--python", venv.python)
    assert_one_line(result, 1, f"{venv.python} could not compile the hook: ")
    assert venv.listing() == before


def test_a_pth_file_of_that_name_that_is_not_nixlds_is_left_alone(venv):
    theirs = venv.site / "nixld-python-hook.pth"
    theirs.write_text("import os\n")
    for action, says in (("install", "is not nixld's: remove it, then install again"),
                         ("remove", "is not nixld's: it is left as it is")):
        assert_one_line(nixld("python-hook", action, "--python", venv.python), 1, f"{theirs} {says}")
    assert theirs.read_text() == "import os\n"
    assert not (venv.site / "_nixld_python_hook.py").exists()


def test_a_hook_with_a_part_missing_is_said_to_be_not_installed_and_install_repairs_it(venv):
    assert nixld("python-hook", "install", "--python", venv.python).returncode == 0
    (venv.site / "_nixld_python_hook_rescue.py").unlink()
    result = nixld("python-hook", "status", "--python", venv.python)
    assert (result.returncode, result.stdout) == (1, f"{venv.site}: nixld's Python hook is not installed, but part "
                                                     "of it is there (nixld-python-hook.pth, _nixld_python_hook.py); "
                                                     "install or remove it again\n")
    assert nixld("python-hook", "install", "--python", venv.python).returncode == 0
    assert nixld("python-hook", "status", "--python", venv.python).returncode == 0


def test_a_hook_of_another_nixld_is_said_to_be_so(venv):
    assert nixld("python-hook", "install", "--python", venv.python).returncode == 0
    pth = venv.site / "nixld-python-hook.pth"
    pth.write_text(pth.read_text().replace(f"# nixld {__version__}'s", "# nixld 0.0.1's"))
    result = nixld("python-hook", "status", "--python", venv.python)
    assert result.returncode == 0
    assert result.stdout.splitlines()[:2] == [
        f"{venv.site}: nixld's Python hook is installed (from nixld 0.0.1), for {venv.python} "
        f"(CPython {venv.release}); loaded at start-up",
        f"  `nixld python-hook install --python {venv.python}` puts this nixld's in its place"]
