"""`nixld find-libs`: the directories that hold what a program is missing, found on disk.

A fake store is built once: packages with lib/ directories, some providing the same library,
one library that needs another package's, decoys of the wrong class or machine, a broken
symlink and a truncated "ELF" file under the names the program needs. find-libs must pick
directories under which the program then runs, with exactly the NIX_LD_LIBRARY_PATH it prints.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import namedtuple
from pathlib import Path

import pytest
from conftest import FOREIGN, compile_all
from crafted import EM_386, EM_AARCH64, EM_X86_64, write_dynamic_elf
from environments import explicit_environment

from nixld import findlibs

REAL_LOADER = "/lib64/ld-linux-x86-64.so.2"
TIMEOUT = 60

Store = namedtuple("Store", "root program vendor_program")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """root/: aaa-alpha (libfl_alpha), bbb-both (libfl_alpha and libfl_dup: provides more),
    ccc-dup (libfl_dup), ddd-beta (libfl_beta, which needs libfl_gamma), eee-gamma (libfl_gamma),
    and decoys for libfl_gamma: 32-bit, aarch64, a broken symlink, a truncated file.
    `program` needs libfl_alpha, libfl_dup and libfl_beta; `vendor_program` is the same program in
    a tree of its own (bin/ and lib/, the latter holding libfl_alpha)."""
    root = tmp_path_factory.mktemp("store")
    build = tmp_path_factory.mktemp("build")
    sources = {}
    for name in ("alpha", "dup", "gamma"):
        sources[name] = build / f"{name}.c"
        sources[name].write_text(f"int fl_{name}(void) {{ return 0; }}\n")
    sources["beta"] = build / "beta.c"
    sources["beta"].write_text("int fl_gamma(void);\nint fl_beta(void) { return fl_gamma(); }\n")
    program_source = build / "program.c"
    program_source.write_text("int fl_alpha(void); int fl_dup(void); int fl_beta(void);\n"
                              "int main(void) { return fl_alpha() + fl_dup() + fl_beta(); }\n")

    def shared(package: str, name: str, *flags: str) -> list[str]:
        (root / package / "lib").mkdir(parents=True, exist_ok=True)
        return ["-shared", "-fPIC", "-o", str(root / package / "lib" / f"libfl_{name}.so"), str(sources[name]), *flags]

    compile_all([shared("aaa-alpha", "alpha"), shared("bbb-both", "alpha"), shared("bbb-both", "dup"),
                 shared("ccc-dup", "dup"), shared("eee-gamma", "gamma")])
    compile_all([shared("ddd-beta", "beta", f"-L{root}/eee-gamma/lib", "-lfl_gamma")])
    for decoy in ("fff-decoy32", "ggg-decoy-arm", "hhh-broken", "iii-truncated"):
        (root / decoy / "lib").mkdir(parents=True)
    write_dynamic_elf(root / "fff-decoy32/lib/libfl_gamma.so", elf_class=32, machine=EM_386)
    write_dynamic_elf(root / "ggg-decoy-arm/lib/libfl_gamma.so", machine=EM_AARCH64)
    os.symlink("/nowhere/libfl_gamma.so", root / "hhh-broken/lib/libfl_gamma.so")
    (root / "iii-truncated/lib/libfl_gamma.so").write_bytes(b"\x7fELF\x02\x01\x01")
    (root / "jjj-docs/share").mkdir(parents=True)
    (root / "jjj-docs/share/README").write_text("not a library\n")

    links = [f"-L{root}/aaa-alpha/lib", "-lfl_alpha", f"-L{root}/ccc-dup/lib", "-lfl_dup",
             f"-L{root}/ddd-beta/lib", "-lfl_beta", f"-Wl,-rpath-link,{root}/eee-gamma/lib"]
    (build / "plain").mkdir()
    program = build / "plain" / "program"  # a tree of its own with no libraries
    vendor = build / "vendor-app"
    (vendor / "bin").mkdir(parents=True)
    (vendor / "lib").mkdir()
    shutil.copy(root / "aaa-alpha/lib/libfl_alpha.so", vendor / "lib")
    compile_all([["-o", str(program), str(program_source), *links, FOREIGN],
                 ["-o", str(vendor / "bin/app"), str(program_source), *links, FOREIGN]])
    return Store(root, str(program), str(vendor / "bin/app"))


def environment(tmp_path: Path, **variables) -> dict:
    return explicit_environment(REAL_LOADER, XDG_CACHE_HOME=str(tmp_path / "cache"), **variables)


def find_libs(nixld_script, *args, env, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([nixld_script, "find-libs", "--no-default-roots", *args], env=env, capture_output=True,
                          timeout=timeout)


def answer_of(nixld_script, *args, env) -> dict:
    result = find_libs(nixld_script, "--json", *args, env=env)
    assert result.stderr == b"", result.stderr
    return {**json.loads(result.stdout), "exit_status": result.returncode}


def test_the_chosen_directories_make_the_program_run(nixld_script, store, tmp_path):
    env = environment(tmp_path)
    result = find_libs(nixld_script, store.program, "--search", str(store.root), env=env)
    assert (result.returncode, result.stderr) == (0, b"")
    last = result.stdout.decode().splitlines()[-1]
    assert last.startswith("NIX_LD_LIBRARY_PATH=")
    value = last.split("=", 1)[1]
    run = subprocess.run([nixld_script, "run", store.program], env={**env, "NIX_LD_LIBRARY_PATH": value},
                         capture_output=True, timeout=TIMEOUT)
    assert (run.returncode, run.stderr) == (0, b"")


def test_directories_that_provide_more_are_preferred_and_needs_are_followed(nixld_script, store, tmp_path):
    answer = answer_of(nixld_script, store.program, "--search", str(store.root), env=environment(tmp_path))
    chosen = [(Path(c["directory"]).parent.name, c["provides"]) for c in answer["chosen"]]
    # bbb-both provides two of the three missing; libfl_gamma is found only because libfl_beta needs it.
    assert chosen == [("bbb-both", ["libfl_alpha.so", "libfl_dup.so"]), ("ddd-beta", ["libfl_beta.so"]),
                      ("eee-gamma", ["libfl_gamma.so"])]
    assert answer["missing_before"] == ["libfl_alpha.so", "libfl_dup.so", "libfl_beta.so"]
    assert answer["unresolved"] == [] and answer["exit_status"] == 0
    assert answer["value"] == ":".join(c["directory"] for c in answer["chosen"])


def test_wrong_class_wrong_machine_broken_and_truncated_candidates_are_never_picked(nixld_script, store, tmp_path):
    answer = answer_of(nixld_script, store.program, "--search", str(store.root), env=environment(tmp_path))
    gamma = [Path(c["directory"]).parent.name for c in answer["candidates"]["libfl_gamma.so"]]
    assert gamma == ["eee-gamma"]


def test_a_library_of_the_programs_machine_but_another_class_is_never_picked(nixld_script, store, tmp_path):
    """x32's libraries are EM_X86_64 like x86-64's, but 32-bit: the loader skips them."""
    (tmp_path / "x32/lib").mkdir(parents=True)
    write_dynamic_elf(tmp_path / "x32/lib/libfl_gamma.so", elf_class=32, machine=EM_X86_64)
    answer = answer_of(nixld_script, store.program, "--search", str(tmp_path / "x32"), "--search", str(store.root),
                       env=environment(tmp_path))
    gamma = [Path(c["directory"]).parent.name for c in answer["candidates"]["libfl_gamma.so"]]
    assert gamma == ["eee-gamma"]


def test_a_fifo_named_like_a_library_is_passed_over_at_once(nixld_script, store, tmp_path):
    """Opening a FIFO for reading waits for a writer: the walk must not open it so."""
    fifos = tmp_path / "fifos"
    (fifos / "lib").mkdir(parents=True)
    os.mkfifo(fifos / "lib/libfl_gamma.so")
    result = find_libs(nixld_script, "--json", store.program, "--search", str(fifos), "--search", str(store.root),
                       env=environment(tmp_path), timeout=10)
    assert (result.returncode, result.stderr) == (0, b"")
    gamma = [Path(c["directory"]).parent.name for c in json.loads(result.stdout)["candidates"]["libfl_gamma.so"]]
    assert gamma == ["eee-gamma"]


def test_several_candidates_are_listed_with_the_one_chosen(nixld_script, store, tmp_path):
    answer = answer_of(nixld_script, store.program, "--search", str(store.root), env=environment(tmp_path))
    dup = {Path(c["directory"]).parent.name: c["chosen"] for c in answer["candidates"]["libfl_dup.so"]}
    assert dup == {"bbb-both": True, "ccc-dup": False}
    text = find_libs(nixld_script, store.program, "--search", str(store.root), env=environment(tmp_path)).stdout
    assert b"libfl_dup.so: 2 candidates; chosen: " + os.fsencode(store.root) + b"/bbb-both/lib" in text


def test_the_programs_own_tree_comes_first(nixld_script, store, tmp_path):
    answer = answer_of(nixld_script, store.vendor_program, "--search", str(store.root), env=environment(tmp_path))
    first = answer["chosen"][0]
    assert (first["directory"], first["origin"]) == (str(Path(store.vendor_program).parent.parent / "lib"), "vendor")
    assert first["provides"] == ["libfl_alpha.so"]
    assert answer["vendor_tree"] == str(Path(store.vendor_program).parent.parent)


def test_what_cannot_be_found_is_listed_and_the_status_is_1(nixld_script, store, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(store.root / "aaa-alpha", partial / "aaa-alpha")
    answer = answer_of(nixld_script, store.program, "--search", str(partial), env=environment(tmp_path))
    assert answer["unresolved"] == ["libfl_dup.so", "libfl_beta.so"] and answer["exit_status"] == 1
    text = find_libs(nixld_script, store.program, "--search", str(partial), env=environment(tmp_path)).stdout
    assert f"libfl_beta.so: not found under {partial}".encode() in text


def test_a_program_missing_nothing_is_said_so(nixld_script, native_probe, tmp_path):
    result = find_libs(nixld_script, native_probe, env=environment(tmp_path))
    assert result.returncode == 0
    assert result.stdout.startswith(f"{native_probe}: nothing is missing with the current settings\n".encode())


def test_a_root_that_is_not_a_directory_is_one_line(nixld_script, store, tmp_path):
    result = find_libs(nixld_script, store.program, "--search", str(tmp_path / "absent"), env=environment(tmp_path))
    assert result.returncode == 1 and result.stderr.count(b"\n") == 1 and b"is not a directory" in result.stderr


# ---------------------------------------------------------------------------------------------
# The index and its cache


def index_how(answer: dict, root) -> str:
    return answer["index"][str(root)]["how"]


def test_the_index_is_cached_and_read_again_only_where_a_directory_changed(nixld_script, store, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(store.root, root, symlinks=True)
    env = environment(tmp_path)
    first = answer_of(nixld_script, store.program, "--search", str(root), env=env)
    second = answer_of(nixld_script, store.program, "--search", str(root), env=env)
    assert (index_how(first, root), index_how(second, root)) == ("built", "cached")
    assert second["index"][str(root)]["files_read"] == 0
    assert second["chosen"] == [{**c, "directory": c["directory"]} for c in first["chosen"]]
    # A package that provides all three: only its new directories are read.
    (root / "aab-all/lib").mkdir(parents=True)
    for name in ("alpha", "dup", "beta"):
        shutil.copy(root / {"alpha": "aaa-alpha", "dup": "ccc-dup", "beta": "ddd-beta"}[name] / f"lib/libfl_{name}.so",
                    root / "aab-all/lib")
    third = answer_of(nixld_script, store.program, "--search", str(root), env=env)
    assert index_how(third, root) == "refreshed"
    assert third["index"][str(root)]["directories_read"] == 3  # root/, aab-all/, aab-all/lib/
    assert third["chosen"][0]["directory"] == str(root / "aab-all/lib")


@pytest.mark.parametrize("damage", [b"", b"{", b"[]", b'{"version": 3, "root": "/elsewhere", "directories": []}',
                                    b'{"version": 2, "root": "ROOT", "directories": []}',
                                    b'{"version": 3, "root": "ROOT", "directories": [["/x", "soon", "", "", []]]}',
                                    b'{"version": 3, "root": "ROOT", "directories": [["/x", 1, "", "libx.so", [64]]]}',
                                    b'{"version": 3, "root": "ROOT", "directories": [["/x", 1, "", "", [], 5]]}',
                                    b"\xff\xfe"])
def test_a_corrupt_or_foreign_cache_file_is_rebuilt_never_trusted(nixld_script, store, tmp_path, damage):
    env = environment(tmp_path)
    answer_of(nixld_script, store.program, "--search", str(store.root), env=env)
    (cache_file,) = (tmp_path / "cache/nixld").glob("index-*.json")
    cache_file.write_bytes(damage.replace(b"ROOT", os.fsencode(store.root)))
    answer = answer_of(nixld_script, store.program, "--search", str(store.root), env=env)
    assert index_how(answer, store.root) == "rebuilt"
    assert [Path(c["directory"]).parent.name for c in answer["chosen"]] == ["bbb-both", "ddd-beta", "eee-gamma"]
    assert json.loads(cache_file.read_text())["version"] == findlibs.INDEX_VERSION


def test_an_unreadable_directory_is_skipped(store, tmp_path, monkeypatch):
    real_scandir = os.scandir

    def scandir(path):
        if os.fsencode(path).endswith(b"/bbb-both/lib"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(findlibs.os, "scandir", scandir)
    index, how = findlibs.load_index(os.fsencode(store.root), None)
    names = {(os.path.basename(os.path.dirname(c.directory)), name) for name, c in index.candidates()}
    assert (b"aaa-alpha", b"libfl_alpha.so") in names
    assert not any(package == b"bbb-both" for package, _ in names)


def test_a_terminal_sees_progress_and_a_pipe_does_not(monkeypatch, capsys):
    class Terminal:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return True

        def write(self, text):
            self.text += text

        def flush(self):
            pass

    terminal = Terminal()
    monkeypatch.setattr(findlibs.sys, "stderr", terminal)
    progress = findlibs._Progress(b"/nix/store")
    progress.update(120)
    progress.done()
    assert terminal.text == "\rnixld: indexing /nix/store: 120 files read\r\033[K"
    monkeypatch.undo()
    quiet = findlibs._Progress(b"/nix/store")
    quiet.update(120)
    quiet.done()
    assert capsys.readouterr().err == ""


def test_the_programs_own_tree_is_walked_shallowly_and_without_hidden_directories(tmp_path):
    tree = tmp_path / "tree"
    for directory in ("lib", "bin/lib", "a/b/c/d/e/lib", ".cache/lib"):
        (tree / directory).mkdir(parents=True)
        shutil.copy("/lib/x86_64-linux-gnu/libz.so.1", tree / directory)
    index = findlibs._vendor_index(os.fsencode(tree))
    found = sorted(os.path.relpath(c.directory, os.fsencode(tree)) for _, c in index.candidates())
    assert found == [b"bin/lib", b"lib"]
