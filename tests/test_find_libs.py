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
import tempfile
import zlib
from collections import namedtuple
from pathlib import Path

import pytest
from conftest import FOREIGN, compile_all
from crafted import EM_386, EM_AARCH64, EM_X86_64, write_dynamic_elf
from environments import explicit_environment

from nixld import findlibs
from nixld.commands import find_libs as find_libs_command

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
# The order: the program's own tree, then the --search roots as given, then the default roots;
# within one root, what provides most, then the shorter path


def copy_package(source: Path, target: Path) -> str:
    """A copy of the package `source` (its lib/) at `target`; returns target/lib."""
    shutil.copytree(source / "lib", target / "lib", symlinks=True)
    return str(target / "lib")


def answer_with_store(program: str, roots: list, nix_store: Path, tmp_path: Path, monkeypatch) -> findlibs.Answer:
    """find-libs with its default roots, where `nix_store` stands for /nix/store."""
    monkeypatch.setattr(findlibs, "STORE", os.fsencode(nix_store))
    env = {b"PATH": b"/usr/bin:/bin", b"NIX_LD": os.fsencode(REAL_LOADER)}
    return findlibs.find_libs(os.fsencode(program), [os.fsencode(root) for root in roots], env,
                              cache_dir=os.fsencode(tmp_path / "cache"))


def chosen_for(answer: findlibs.Answer, name: bytes) -> str:
    (directory,) = [os.fsdecode(choice.directory) for choice in answer.chosen if name in choice.provides]
    return directory


def test_a_search_root_comes_before_the_nix_store_even_with_a_longer_path(store, tmp_path, monkeypatch):
    """What the user named wins over what is there anyway: the store's directory is shorter and
    provides more of what is missing, and still comes second."""
    nix_store = tmp_path / "s"
    shutil.copytree(store.root, nix_store, symlinks=True)
    mine = copy_package(store.root / "aaa-alpha", tmp_path / "a-search-root-with-a-long-name" / "my-alpha-build")
    answer = answer_with_store(store.program, [tmp_path / "a-search-root-with-a-long-name"], nix_store, tmp_path,
                               monkeypatch)
    assert len(mine) > len(str(nix_store / "bbb-both/lib"))
    assert answer.chosen[0] == (os.fsencode(mine), (b"libfl_alpha.so",), "root",
                                os.fsencode(tmp_path / "a-search-root-with-a-long-name"))
    # Then, within the store, the shorter of the two that provide libfl_dup.so alone.
    assert chosen_for(answer, b"libfl_dup.so") == str(nix_store / "ccc-dup/lib")
    assert answer.roots[0] == os.fsencode(tmp_path / "a-search-root-with-a-long-name")
    assert answer.unresolved == ()
    text = find_libs_command.render(answer)
    assert (f"libfl_alpha.so: 3 candidates; chosen: {mine}, under {tmp_path / 'a-search-root-with-a-long-name'},"
            f" searched before {nix_store}; also in ") in text


def test_search_roots_count_in_the_order_given(nixld_script, store, tmp_path):
    first, second = tmp_path / "first-root-given", tmp_path / "second"
    longer = copy_package(store.root / "aaa-alpha", first / "alpha-with-a-longer-name")
    copy_package(store.root / "aaa-alpha", second / "alpha")
    answer = answer_of(nixld_script, store.program, "--search", str(first), "--search", str(second), "--search",
                       str(store.root), env=environment(tmp_path))
    assert answer["chosen"][0] == {"directory": longer, "provides": ["libfl_alpha.so"], "origin": "root",
                                   "root": str(first)}
    assert answer["roots"] == [str(first), str(second), str(store.root)]


def test_the_programs_own_tree_comes_before_search_roots_and_the_store(store, tmp_path, monkeypatch):
    """The vendor's lib/ provides one library; a --search root and the store each hold a directory
    that provides more: the vendor's still comes first, then the --search root's."""
    nix_store = tmp_path / "s"
    shutil.copytree(store.root, nix_store, symlinks=True)
    search = tmp_path / "r"
    copy_package(store.root / "bbb-both", search / "b")
    answer = answer_with_store(store.vendor_program, [search], nix_store, tmp_path, monkeypatch)
    vendor_lib = os.fsencode(Path(store.vendor_program).parent.parent / "lib")
    assert answer.chosen[0] == (vendor_lib, (b"libfl_alpha.so",), "vendor", os.path.dirname(vendor_lib))
    assert chosen_for(answer, b"libfl_dup.so") == str(search / "b/lib")


def test_within_one_root_the_shorter_path_wins_among_directories_that_provide_as_much(nixld_script, store,
                                                                                          tmp_path):
    """The shorter directory sorts after the longer one, so that neither the order of the walk
    nor the order of the names could choose it in the tie-break's place."""
    root = tmp_path / "root"
    copy_package(store.root / "aaa-alpha", root / "aaaa-alpha-with-a-long-name")
    shorter = copy_package(store.root / "aaa-alpha", root / "zz")
    for package in ("ccc-dup", "ddd-beta", "eee-gamma"):
        copy_package(store.root / package, root / package)
    answer = answer_of(nixld_script, store.program, "--search", str(root), env=environment(tmp_path))
    alpha = [choice for choice in answer["chosen"] if choice["provides"] == ["libfl_alpha.so"]]
    assert [choice["directory"] for choice in alpha] == [shorter]
    text = find_libs(nixld_script, store.program, "--search", str(root), env=environment(tmp_path)).stdout
    assert f"chosen: {shorter}, the shortest path of those providing as much".encode() in text


# What find-libs must never take for a program's own tree (README: "not for trees as wide as
# /usr or /opt"): a program directly in one of them, or in its bin/, sbin/ or libexec/.
TOO_WIDE = ["/", "/usr", "/usr/local", "/opt", "/home", "/nix", "/nix/store", "/run", "/run/current-system/sw",
            "/tmp"]


@pytest.mark.parametrize("wide", TOO_WIDE)
def test_a_program_in_a_tree_as_wide_as_usr_has_no_tree_of_its_own(wide):
    for where in ("", "/bin", "/sbin", "/libexec"):
        assert findlibs.vendor_tree(os.fsencode(f"{wide}{where}/tool".replace("//", "/"))) is None
    assert findlibs.vendor_tree(os.fsencode(f"{wide}/vendor/bin/tool".replace("//", "/"))) == \
        os.fsencode(f"{wide}/vendor".replace("//", "/"))


def test_a_program_directly_in_tmp_brings_no_tree_of_its_own(nixld_script, store, tmp_path):
    fd, program = tempfile.mkstemp(dir="/tmp", prefix="nixld-test-find-libs-")
    os.close(fd)
    try:
        shutil.copy(store.program, program)
        answer = answer_of(nixld_script, program, "--search", str(store.root), env=environment(tmp_path))
    finally:
        os.unlink(program)
    assert answer["vendor_tree"] is None
    assert all(choice["origin"] == "root" for choice in answer["chosen"])


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


def _with_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


def _rewritten(data: bytes, **fields) -> bytes:
    """The cache file `data` with header fields changed (and its checksum made right again)."""
    header = findlibs._HEADER
    names = ("magic", "version", "store", "directories", "subdirectory_names", "libraries")
    values = dict(zip(names, header.unpack_from(data)))
    values.update(fields)
    lengths = header.unpack_from(data)[len(names):]
    return _with_crc(header.pack(*(values[name] for name in names), *lengths) + data[header.size:-4])


def _index_bytes(root: bytes, **tables) -> bytes:
    """A well-formed cache file of `root` with one directory, whose tables are then replaced."""
    index = findlibs.RootIndex(root)
    index._set_records({b"": (1, [], {b"libx.so": (64, 62)})})
    for name, value in tables.items():
        setattr(index, name, value)
    return index.to_bytes()


DAMAGES = {
    "empty": lambda data, root: b"",
    "cut short": lambda data, root: data[:len(data) // 2],
    "a byte changed": lambda data, root: data[:-40] + bytes([data[-40] ^ 1]) + data[-39:],
    "the JSON of version 3": lambda data, root: b'{"version": 3, "root": "%s", "directories": []}' % root,
    "another format version": lambda data, root: _rewritten(data, version=findlibs.INDEX_VERSION + 1),
    "another root": lambda data, root: _index_bytes(root + b"-elsewhere"),
    "read as a store": lambda data, root: _rewritten(data, store=1),
    "one library too many": lambda data, root: _rewritten(data, libraries=findlibs._HEADER.unpack_from(data)[5] + 1),
    "a library in no directory": lambda data, root: _index_bytes(root, _owners=[1]),
    "names out of order": lambda data, root: _index_bytes(root, _names=[b"libz.so", b"liba.so"], _owners=[0, 0],
                                                            _classes=[64, 64], _machines=[62, 62]),
    "an mtime cut short": lambda data, root: _rewritten(data[:-4], directories=findlibs._HEADER.unpack_from(data)[3]),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_corrupt_or_foreign_cache_file_is_rebuilt_never_trusted(nixld_script, store, tmp_path, damage):
    env = environment(tmp_path)
    answer_of(nixld_script, store.program, "--search", str(store.root), env=env)
    (cache_file,) = (tmp_path / "cache/nixld").glob("index-*")
    cache_file.write_bytes(DAMAGES[damage](cache_file.read_bytes(), os.fsencode(store.root)))
    answer = answer_of(nixld_script, store.program, "--search", str(store.root), env=env)
    assert index_how(answer, store.root) == "rebuilt"
    assert [Path(c["directory"]).parent.name for c in answer["chosen"]] == ["bbb-both", "ddd-beta", "eee-gamma"]
    assert findlibs.RootIndex.from_bytes(os.fsencode(store.root), cache_file.read_bytes()) is not None


def test_a_library_added_or_removed_deep_in_the_tree_is_seen_though_no_parent_changed(store, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(store.root, root, symlinks=True)
    cache = os.fsencode(tmp_path / "cache")

    def providers(name: bytes) -> set:
        index, how = findlibs.load_index(os.fsencode(root), cache)
        return how, index.directories_read, {Path(os.fsdecode(c.directory)).parent.name for c in index.providers(name)}

    assert providers(b"libfl_alpha.so") == ("built", 21, {"aaa-alpha", "bbb-both"})
    assert providers(b"libfl_alpha.so") == ("cached", 0, {"aaa-alpha", "bbb-both"})
    shutil.copy(root / "aaa-alpha/lib/libfl_alpha.so", root / "ccc-dup/lib")
    assert providers(b"libfl_alpha.so") == ("refreshed", 1, {"aaa-alpha", "bbb-both", "ccc-dup"})
    (root / "bbb-both/lib/libfl_alpha.so").unlink()
    assert providers(b"libfl_alpha.so") == ("refreshed", 1, {"aaa-alpha", "ccc-dup"})
    (root / "jjj-docs/share/lib").mkdir()
    shutil.copy(root / "aaa-alpha/lib/libfl_alpha.so", root / "jjj-docs/share/lib")
    assert providers(b"libfl_alpha.so") == ("refreshed", 2, {"aaa-alpha", "ccc-dup", "share"})


def nix_package(store_root: Path, name: str, libraries: dict) -> Path:
    """A store path holding lib/ with `libraries` ({file name: source}), finished as Nix finishes
    one: every mtime set to 1 s."""
    package = store_root / name
    (package / "lib").mkdir(parents=True)
    for library, source in libraries.items():
        shutil.copy(source, package / "lib" / library)
    for path in (package / "lib" / library for library in libraries):
        os.utime(path, ns=(findlibs.NIX_MTIME, findlibs.NIX_MTIME))
    for path in (package / "lib", package):
        os.utime(path, ns=(findlibs.NIX_MTIME, findlibs.NIX_MTIME))
    return package


def test_a_nix_store_is_listed_again_only_when_a_package_comes_or_goes(store, tmp_path, monkeypatch):
    """Store paths do not change once Nix has finished them: a warm run looks at the store's own
    mtime and at nothing inside a finished package; a package added or removed is seen."""
    nix = tmp_path / "nix-store"
    alpha = store.root / "aaa-alpha/lib/libfl_alpha.so"
    nix_package(nix, "0aaa-alpha-1.0", {"libfl_alpha.so": alpha})
    nix_package(nix, "0bbb-docs-1.0", {})
    monkeypatch.setattr(findlibs, "STORE", os.fsencode(nix))
    cache = os.fsencode(tmp_path / "cache")
    looked_at = []
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        looked_at.append(os.fsencode(path))
        return real_stat(path, *args, **kwargs)

    def index(name: bytes):
        looked_at.clear()
        found, how = findlibs.load_index(os.fsencode(nix), cache, store=True)
        return how, sorted(os.path.basename(os.path.dirname(c.directory)) for c in found.providers(name))

    assert index(b"libfl_alpha.so") == ("built", [b"0aaa-alpha-1.0"])
    monkeypatch.setattr(findlibs.os, "stat", stat)
    assert index(b"libfl_alpha.so") == ("cached", [b"0aaa-alpha-1.0"])
    assert looked_at == []  # the store directory itself is looked at through its descriptor
    nix_package(nix, "0ccc-alpha-2.0", {"libfl_alpha.so": alpha})
    assert index(b"libfl_alpha.so") == ("refreshed", [b"0aaa-alpha-1.0", b"0ccc-alpha-2.0"])
    assert not any(b"0aaa-alpha" in path or b"0bbb-docs" in path for path in looked_at)
    shutil.rmtree(nix / "0aaa-alpha-1.0")
    assert index(b"libfl_alpha.so") == ("refreshed", [b"0ccc-alpha-2.0"])


def test_a_store_package_nix_has_not_finished_is_read_again_when_it_changes(store, tmp_path):
    """A path being built or unpacked has mtimes other than 1 s: it is checked like any directory."""
    nix = tmp_path / "nix-store"
    nix_package(nix, "0aaa-alpha-1.0", {})
    partial = nix / "0ddd-partial-1.0"
    (partial / "lib").mkdir(parents=True)
    cache = os.fsencode(tmp_path / "cache")
    assert findlibs.load_index(os.fsencode(nix), cache, store=True)[1] == "built"
    shutil.copy(store.root / "aaa-alpha/lib/libfl_alpha.so", partial / "lib")
    index, how = findlibs.load_index(os.fsencode(nix), cache, store=True)
    assert how == "refreshed"
    assert [c.directory for c in index.providers(b"libfl_alpha.so")] == [os.fsencode(partial / "lib")]


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
    monkeypatch.setattr(find_libs_command.sys, "stderr", terminal)
    progress = find_libs_command.TerminalProgress(b"/nix/store")
    progress.update(120)
    progress.done()
    assert terminal.text == "\rnixld: indexing /nix/store: 120 files read\r\033[K"
    monkeypatch.undo()
    quiet = find_libs_command.TerminalProgress(b"/nix/store")
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
