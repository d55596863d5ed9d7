"""nixld's Python hook in the Pythons it is for (this one and 3.8), with extension modules whose
libraries only a NIX_LD directory holds, as pip's wheels under a Nix Python: the hook must
load them there and nowhere else, leave the environment alone, and otherwise let the loader's
error through as it is.

Each test runs a Python of two virtualenvs of the same interpreter (conftest.hook_venvs): one
where `nixld python-hook install` put the hook, one without it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import HOOK_VALUES
from environments import explicit_environment

TIMEOUT = 60
NOTE_PREFIX = "nixld python-hook: "


def environment(tree, **variables) -> dict:
    """What the tests give each Python: PATH, a UTF-8 locale, the test modules on PYTHONPATH,
    and `variables` (None unsets one)."""
    env = explicit_environment("", PYTHONPATH=tree.modules, **variables)
    del env["NIX_LD"]
    return env


def run(python: str, code: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-c", code, *args], env=env, capture_output=True, text=True, timeout=TIMEOUT)


def loader_message(soname: str) -> str:
    return f"ImportError: {soname}: cannot open shared object file: No such file or directory"


def python_version(python: str) -> tuple[int, int]:
    output = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                            text=True, check=True, timeout=TIMEOUT).stdout
    return tuple(int(part) for part in output.split())


def test_without_the_hook_an_extension_module_fails_with_the_loaders_message(hook_venvs, hook_tree):
    result = run(hook_venvs.plain, "import hookext", environment(hook_tree, NIX_LD_LIBRARY_PATH=hook_tree.nix))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == loader_message("libhookdep.so.1")


def test_the_hook_loads_the_library_and_what_it_needs_from_nix_ld_library_path(hook_venvs, hook_tree):
    """hookext needs libhookdep.so.1, which needs libhookleaf.so.1: neither is where the loader
    looks, both are in the NIX_LD directory."""
    env = environment(hook_tree, NIX_LD_LIBRARY_PATH=f"/nowhere:{hook_tree.nix}")
    result = run(hook_venvs.hooked, "import hookext; print(hookext.value())", env)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", f"{HOOK_VALUES['nix']}\n")


@pytest.mark.parametrize("variables", [
    {"NIX_LD_LIBRARY_PATH_x86_64_linux": "{nix}", "NIX_LD_LIBRARY_PATH": "/nowhere"},
    {"NIX_LD_LIBRARY_PATH_x86_64-linux": "{nix}", "NIX_LD_LIBRARY_PATH": "/nowhere"},
    {"NIX_LD_LIBRARY_PATH": "/nowhere,,{nix}"},
], ids=["nix-ld-2.x-system-variable", "nix-ld-1.x-system-variable", "commas-and-an-empty-entry"])
def test_the_hook_reads_nix_ld_library_path_as_nixld_reads_it(hook_venvs, hook_tree, variables):
    env = environment(hook_tree, **{name: value.format(nix=hook_tree.nix) for name, value in variables.items()})
    result = run(hook_venvs.hooked, "import hookext; print(hookext.value())", env)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", f"{HOOK_VALUES['nix']}\n")


def test_what_the_loader_finds_itself_is_taken_from_where_it_finds_it(hook_venvs, hook_tree):
    """The hook provides only what the loader did not find: libhookleaf.so.1 is on the
    caller's LD_LIBRARY_PATH (own_leaf's gives 50), so the NIX_LD directory's is not used."""
    env = environment(hook_tree, NIX_LD_LIBRARY_PATH=hook_tree.nix, LD_LIBRARY_PATH=hook_tree.own_leaf)
    result = run(hook_venvs.hooked, "import hookext; print(hookext.value())", env)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", f"{HOOK_VALUES['own leaf']}\n")


def test_a_library_of_another_class_is_passed_over_for_the_next_directory(hook_venvs, hook_tree):
    env = environment(hook_tree, NIX_LD_LIBRARY_PATH=f"{hook_tree.d32}:{hook_tree.nix}")
    result = run(hook_venvs.hooked, "import hookext; print(hookext.value())", env)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", f"{HOOK_VALUES['nix']}\n")


def test_a_32_bit_library_is_never_loaded_into_a_64_bit_python(hook_venvs, hook_tree):
    result = run(hook_venvs.hooked, "import hookext", environment(hook_tree, NIX_LD_LIBRARY_PATH=hook_tree.d32))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert loader_message("libhookdep.so.1") in lines
    if python_version(hook_venvs.hooked) >= (3, 11):
        assert lines[-1] == (f"{NOTE_PREFIX}libhookdep.so.1 is not in the NIX_LD library directories either: "
                             f"looked in {hook_tree.d32} (from NIX_LD_LIBRARY_PATH); skipped "
                             f"{hook_tree.d32}/libhookdep.so.1 is i386 (32-bit), not x86_64 (64-bit)")


def test_a_library_without_the_soname_asked_for_is_passed_over(hook_venvs, hook_tree):
    """Loaded by its path, a library answers to its own soname only: one without it would not
    satisfy the need, so the next directory's is taken."""
    env = environment(hook_tree, NIX_LD_LIBRARY_PATH=f"{hook_tree.nosoname}:{hook_tree.nix}")
    result = run(hook_venvs.hooked, "import hookext; print(hookext.value())", env)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", f"{HOOK_VALUES['nix']}\n")


def test_a_library_bundled_in_the_wheel_gets_what_it_needs(hook_venvs, hook_tree):
    """bundled._core finds its libbundled-1a2b3c4d.so by its RUNPATH, as auditwheel's wheels do;
    it is that library's need the loader does not find (pyzmq's libzmq, shapely's libgeos)."""
    env = environment(hook_tree, NIX_LD_LIBRARY_PATH=hook_tree.nix)
    assert run(hook_venvs.plain, "import bundled", env).stderr.splitlines()[-1] == loader_message("libhookdep.so.1")
    result = run(hook_venvs.hooked, "import bundled; print(bundled.value())", env)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", f"{HOOK_VALUES['bundled']}\n")


def test_a_package_that_swallows_the_import_error_gets_its_extension_module(hook_venvs, hook_tree):
    """fallback imports its _speedups and falls back to Python, silently, when that fails: the
    hook acts where the library is loaded, not on an exception that never surfaces."""
    env = environment(hook_tree, NIX_LD_LIBRARY_PATH=hook_tree.nix)
    code = "import fallback; print(fallback.SPEEDUPS, fallback.value())"
    assert run(hook_venvs.plain, code, env).stdout == "False 0\n"
    result = run(hook_venvs.hooked, code, env)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", f"True {HOOK_VALUES['nix']}\n")


def test_a_library_the_hook_loaded_serves_only_those_that_need_it(hook_venvs, hook_tree):
    """RTLD_LOCAL: once the hook has loaded the NIX_LD directory's libhookleaf.so.1 (40) for
    hookext, `mangled` still calls its own renamed copy (60), as the wheels auditwheel makes
    do; loaded RTLD_GLOBAL, the hook's copy would come first for every library loaded later."""
    env = environment(hook_tree, NIX_LD_LIBRARY_PATH=hook_tree.nix)
    result = run(hook_venvs.hooked, "import hookext, mangled; print(hookext.value(), mangled.value())", env)
    assert (result.returncode, result.stderr, result.stdout) == (
        0, "", f"{HOOK_VALUES['nix']} {HOOK_VALUES['mangled']}\n")


@pytest.mark.parametrize("module", ["hookext", "bundled"])
def test_when_nothing_is_found_the_loaders_error_surfaces_as_it_is_with_a_note(hook_venvs, hook_tree, module):
    """The same traceback, line for line, as without the hook, and under it (from Python 3.11,
    which shows an exception's notes) one line saying where nixld looked."""
    env = environment(hook_tree, NIX_LD_LIBRARY_PATH=f"{hook_tree.own_leaf}:/nowhere")
    plain = run(hook_venvs.plain, f"import {module}", env)
    hooked = run(hook_venvs.hooked, f"import {module}", env)
    assert plain.returncode == hooked.returncode == 1
    note = (f"{NOTE_PREFIX}libhookdep.so.1 is not in the NIX_LD library directories either: looked in "
            f"{hook_tree.own_leaf}, /nowhere (from NIX_LD_LIBRARY_PATH)")
    if python_version(hook_venvs.hooked) >= (3, 11):
        assert hooked.stderr == plain.stderr + note + "\n"
    else:
        assert hooked.stderr == plain.stderr
    # The error itself: its class, message, name and path, and the note where notes are kept.
    code = ("import json\ntry:\n    import hookext\nexcept ImportError as error:\n"
            "    print(json.dumps([type(error).__name__, str(error), error.name, error.path,"
            " getattr(error, '__notes__', None)]))")
    plain_error = json.loads(run(hook_venvs.plain, code, env).stdout)
    assert json.loads(run(hook_venvs.hooked, code, env).stdout) == plain_error[:4] + [[note]]


def test_without_nix_ld_library_path_the_note_names_nix_ld_s_default_directory(hook_venvs, hook_tree):
    code = ("try:\n    import hookext\nexcept ImportError as error:\n    print(*error.__notes__)")
    result = run(hook_venvs.hooked, code, environment(hook_tree))
    assert result.stdout == (f"{NOTE_PREFIX}libhookdep.so.1 is not in the NIX_LD library directories either: "
                             "looked in nix-ld's default directory /run/current-system/sw/share/nix-ld/lib "
                             "(NIX_LD_LIBRARY_PATH_x86_64_linux and NIX_LD_LIBRARY_PATH are unset)\n")


def test_what_was_loaded_for_an_import_that_fails_all_the_same_is_unloaded(hook_venvs, hook_tree):
    """nix_without_leaf has libhookdep.so.1 but not the libhookleaf.so.1 it needs: the import
    fails, the note says which library is missing and who needs it, and libhookdep.so.1 is
    not left in the process."""
    code = ("try:\n    import hookext\nexcept ImportError as error:\n    print(error)\n    print(*error.__notes__)\n"
            "print(any('libhookdep' in line for line in open('/proc/self/maps')))")
    result = run(hook_venvs.hooked, code, environment(hook_tree, NIX_LD_LIBRARY_PATH=hook_tree.nix_without_leaf))
    assert result.stdout.splitlines() == [
        "libhookdep.so.1: cannot open shared object file: No such file or directory",
        f"{NOTE_PREFIX}libhookleaf.so.1, which {hook_tree.nix_without_leaf}/libhookdep.so.1 needs, is not in the "
        f"NIX_LD library directories either: looked in {hook_tree.nix_without_leaf} (from NIX_LD_LIBRARY_PATH)",
        "False",
    ]


def test_ctypes_finds_a_library_named_without_a_slash_in_nix_ld_library_path(hook_venvs, hook_tree):
    code = ("import ctypes\nlibrary = ctypes.CDLL('libhookdep.so.1')\n"
            "print(library.hookdep_value(), library._name)")
    env = environment(hook_tree, NIX_LD_LIBRARY_PATH=hook_tree.nix)
    assert "OSError: libhookdep.so.1: cannot open shared object file" in run(hook_venvs.plain, code, env).stderr
    result = run(hook_venvs.hooked, code, env)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", f"{HOOK_VALUES['nix']} libhookdep.so.1\n")


def test_ctypes_loads_a_library_by_path_whose_needs_are_in_nix_ld_library_path(hook_venvs, hook_tree):
    """As lightgbm and llvmlite load their C++ core, before any extension module."""
    code = "import ctypes, sys\nprint(ctypes.CDLL(sys.argv[1]).bundled_value())"
    env = environment(hook_tree, NIX_LD_LIBRARY_PATH=hook_tree.nix)
    assert "OSError: libhookdep.so.1: cannot open shared object file" in run(
        hook_venvs.plain, code, env, hook_tree.bundled_library).stderr
    result = run(hook_venvs.hooked, code, env, hook_tree.bundled_library)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", f"{HOOK_VALUES['bundled']}\n")


def test_ctypes_util_find_library_looks_in_nix_ld_library_path_when_it_finds_nothing(hook_venvs, hook_tree):
    code = ("import ctypes, ctypes.util\nfound = ctypes.util.find_library('hookdep')\n"
            "print(found, ctypes.util.find_library('nixld-no-such-library'), ctypes.CDLL(found).hookdep_value())")
    env = environment(hook_tree, NIX_LD_LIBRARY_PATH=f"{hook_tree.d32}:{hook_tree.nix}")
    result = run(hook_venvs.hooked, code, env)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{hook_tree.nix}/libhookdep.so.1 None {HOOK_VALUES['nix']}\n"
    assert run(hook_venvs.plain, "import ctypes.util; print(ctypes.util.find_library('hookdep'))", env).stdout == \
        "None\n"


def test_ctypes_failing_all_the_same_raises_its_own_error_with_a_note(hook_venvs, hook_tree):
    code = ("import ctypes\ntry:\n    ctypes.CDLL('libhookdep.so.1')\nexcept OSError as error:\n"
            "    print(type(error).__name__, error, error.__notes__)")
    result = run(hook_venvs.hooked, code, environment(hook_tree, NIX_LD_LIBRARY_PATH="/nowhere"))
    note = (f"{NOTE_PREFIX}libhookdep.so.1 is not in the NIX_LD library directories either: looked in "
            "/nowhere (from NIX_LD_LIBRARY_PATH)")
    assert result.stdout == ("OSError libhookdep.so.1: cannot open shared object file: No such file or directory "
                             f"{[note]}\n")


def test_the_environment_is_never_touched_and_children_see_exactly_it(hook_venvs, hook_tree):
    """No LD_LIBRARY_PATH, nor anything else: after the hook loaded libraries from the NIX_LD
    directory, the Python's own environment and a child's are the caller's, entry for entry."""
    env = environment(hook_tree, NIX_LD_LIBRARY_PATH=hook_tree.nix, MARKER="visible")
    code = ("import json, os, subprocess, hookext, bundled, ctypes\n"
            "ctypes.CDLL('libhookdep.so.1')\n"
            "child = subprocess.run(['/usr/bin/env'], capture_output=True, text=True).stdout\n"
            "print(json.dumps([hookext.value(), dict(os.environ), child.splitlines()]))")
    result = run(hook_venvs.hooked, code, env)
    assert (result.returncode, result.stderr) == (0, "")
    value, own, child = json.loads(result.stdout)
    assert value == HOOK_VALUES["nix"]
    assert own == env
    assert dict(line.split("=", 1) for line in child) == env


def test_at_start_up_the_hook_imports_nothing_but_itself(hook_venvs, hook_tree):
    """Start-up cost: the hook touches only what the interpreter has already loaded (ctypes
    alone would double a Python's start-up time); its rescue module comes with a failure."""
    code = "import sys; print(' '.join(sorted(sys.modules)))"
    env = environment(hook_tree)
    plain = set(run(hook_venvs.plain, code, env).stdout.split())
    hooked = set(run(hook_venvs.hooked, code, env).stdout.split())
    # Reading any .pth file: Python 3.8's site does it in the locale's encoding, through the first
    # two; 3.13's tries UTF-8 with a byte-order mark first, through the third.
    reading_a_pth_file = {"_bootlocale", "_locale", "encodings.utf_8_sig"}
    assert hooked - plain - reading_a_pth_file == {"_nixld_python_hook"}
    assert plain - hooked == set()


def test_nix_ld_log_info_says_what_the_hook_loaded(hook_venvs, hook_tree):
    env = environment(hook_tree, NIX_LD_LIBRARY_PATH=hook_tree.nix, NIX_LD_LOG="info")
    result = run(hook_venvs.hooked, "import hookext", env)
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        f"{NOTE_PREFIX}info: loaded {hook_tree.nix}/libhookleaf.so.1 for hookext (the loader did not find "
        "libhookleaf.so.1)",
        f"{NOTE_PREFIX}info: loaded {hook_tree.nix}/libhookdep.so.1 for hookext (the loader did not find "
        "libhookdep.so.1)",
    ]
    assert run(hook_venvs.hooked, "import hookext", {**env, "NIX_LD_LOG": "warn"}).stderr == ""


def test_a_hook_whose_rescue_module_is_gone_lets_the_loaders_error_through(hook_venvs, hook_tree, tmp_path):
    """A damaged installation changes nothing but the help: the loader's error, as it is."""
    broken = tmp_path / "broken"
    subprocess.run([hook_venvs.hooked, "-m", "venv", "--without-pip", str(broken)], check=True, timeout=TIMEOUT)
    site = subprocess.run([str(broken / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout.strip()
    hooked_site = subprocess.run([hook_venvs.hooked, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                 capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout.strip()
    for name in ("_nixld_python_hook.py", "nixld-python-hook.pth"):
        shutil.copy(os.path.join(hooked_site, name), site)
    env = environment(hook_tree, NIX_LD_LIBRARY_PATH=hook_tree.nix)
    assert run(str(broken / "bin/python"), "import sys; print('_nixld_python_hook' in sys.modules)", env).stdout == \
        "True\n"
    assert run(str(broken / "bin/python"), "import hookext", env).stderr == \
        run(hook_venvs.plain, "import hookext", env).stderr


def test_the_hook_modules_need_only_the_standard_library():
    """What they import, anywhere in them, is the standard library's (and only what start-up
    has loaded, or what a failure needs), or each other."""
    import ast

    from nixld import pyhook

    for module in pyhook.HOOK_MODULES:
        tree = ast.parse(pyhook.hook_sources()[module + ".py"])
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert imported <= {"_thread", "os", "sys", "struct", "_ctypes", *pyhook.HOOK_MODULES}, module
