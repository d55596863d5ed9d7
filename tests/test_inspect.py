"""`nixld inspect`: where every library resolves, held to glibc's own loader.

The oracle is the loader itself, started the way `nixld run` starts a program (the same loader,
the same --library-path) with LD_TRACE_LOADED_OBJECTS=1, which is what ldd sets: it maps every
library, prints the list, and runs nothing. (`ld.so --list` would do, but glibc 2.36's gives up
at the first library it cannot find.) LD_DEBUG=libs says which step of the search found each
library. The programs are this machine's own, and the small ones conftest.py builds for every
search rule (`inspect_tree`, `i386_decoys`, `i386_programs`); where the loader cannot run a
file (another machine's, a hand-made one from tests/crafted.py), the expected result is
reasoned out below instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import X86_64_HWCAPS
from crafted import (EM_386, EM_AARCH64, EM_X86_64, dynamic_elf_bytes, overwrite_program_headers, write_dynamic_elf,
                     write_elf, write_loader)
from environments import run_with_block
from hypothesis import given, settings
from hypothesis import strategies as st

import nixld
import nixld.glibc
import nixld.objects
from nixld.resolve import Inspection, Inspector

REAL_LOADER = "/lib64/ld-linux-x86-64.so.2"
# A NIX_LD_LIBRARY_PATH that names nothing, so that nix-ld's default directory (which exists
# on NixOS) never takes part in these tests.
NO_NIX_LD_LIBRARY_DIR = "/nonexistent/nix-ld/lib"
TIMEOUT = 60
# Opening a FIFO for reading waits for a writer: an inspection that opens the loader so never ends.
AT_ONCE = 10

# How the loader and nixld name the loader in their lists: glibc prints it under the
# program's PT_INTERP, nixld under the name a library asked for it by; both give its path.
THE_LOADER = b"<the loader>"
# The `via` of a library the loader found by searching, by the step LD_DEBUG names.
SEARCH_STEPS = {b"RPATH": "rpath", b"RUNPATH": "runpath", b"LD_LIBRARY_PATH": "library-path",
                b"--library-path": "library-path", b"system search path": "default"}

ET_EXEC, ET_DYN = 2, 3


def environment(**variables: str | bytes) -> dict:
    """The environment of an inspection: the host's loader as NIX_LD, then `variables`."""
    return {"NIX_LD": REAL_LOADER, "NIX_LD_LIBRARY_PATH": NO_NIX_LD_LIBRARY_DIR, **variables}


def inspect(program, libs=(), **variables) -> Inspection:
    return nixld.inspect(program, libs, env=environment(**variables))


def as_bytes(path) -> bytes:
    return os.fsencode(path)


# ---------------------------------------------------------------------------------------------
# The oracle


def run_loader(loader, program, library_path, *, cwd=None, debug=False, env=None) -> subprocess.CompletedProcess:
    """The loader's trace of the launch `nixld run` makes (LOADER --library-path DIRS PROGRAM);
    `env` adds variables of the launch's environment that the loader reads (GLIBC_TUNABLES)."""
    env = {**(env or {}), "LD_TRACE_LOADED_OBJECTS": "1", **({"LD_DEBUG": "libs"} if debug else {})}
    command = [as_bytes(loader), b"--library-path", b":".join(map(as_bytes, library_path)), as_bytes(program)]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, timeout=TIMEOUT)


_LISTED = re.compile(rb"\t(.*?)(?: => (.*))? \(0x[0-9a-f]+\)")
_NOT_FOUND = re.compile(rb"\t(.*) => not found")
_VDSO = {b"linux-vdso.so.1", b"linux-gate.so.1"}


def parse_trace(result: subprocess.CompletedProcess, loader) -> list[tuple[bytes, bytes | None]]:
    """(name, path) for every object the loader listed, in its order; path None when it was
    not found, THE_LOADER as the name of the loader itself."""
    assert result.returncode == 0, result.stderr.decode(errors="backslashreplace")
    entries = []
    for line in result.stdout.splitlines():
        if line.strip() in (b"statically linked", b"not a dynamic executable"):
            continue
        missing = _NOT_FOUND.fullmatch(line)
        listed = None if missing else _LISTED.fullmatch(line)
        assert missing or listed, f"unexpected line from the loader: {line!r}"
        if missing:
            entries.append((missing[1], None))
        elif listed[1] not in _VDSO:
            path = listed[2] or listed[1]
            entries.append((THE_LOADER if path == as_bytes(loader) else listed[1], path))
    return entries


def loader_lists(inspection: Inspection, *, cwd=None, env=None) -> list[tuple[bytes, bytes | None]]:
    """What the inspection's loader lists for its program, with its library path."""
    loader = inspection.loader.path
    return parse_trace(run_loader(loader, inspection.path, inspection.search_path, cwd=cwd, env=env), loader)


def nixld_lists(inspection: Inspection) -> list[tuple[bytes, bytes | None]]:
    return [(THE_LOADER if library.via == "loader" else library.soname, library.path)
            for library in inspection.libraries]


def loader_tries(inspection: Inspection, *, cwd=None, env=None) -> dict[bytes, list[tuple[str, bytes]]]:
    """For each name the loader searched, as LD_DEBUG=libs tells: every file it tried, in
    order, each with the step of the search it was on. The last is the one it took, when it
    found one."""
    result = run_loader(inspection.loader.path, inspection.path, inspection.search_path, cwd=cwd, debug=True,
                        env=env)
    return parse_tries(result.stderr)


def parse_tries(debug_output: bytes) -> dict[bytes, list[tuple[str, bytes]]]:
    """loader_tries' answer, from the loader's LD_DEBUG=libs output."""
    tries: dict[bytes, list[tuple[str, bytes]]] = {}
    name = step = None
    for line in debug_output.splitlines():
        message = line.partition(b":\t")[2]
        searching = re.fullmatch(rb"find library=(.*) \[\d+\]; searching", message)
        if searching:
            name, step = searching[1], None
            tries[name] = []
        elif message.startswith(b" search cache="):
            step = "cache"
        elif message.startswith(b" search path="):
            source = message.rpartition(b"(")[2].rstrip(b")")
            step = next(via for prefix, via in SEARCH_STEPS.items() if source.startswith(prefix))
        elif message.startswith(b"  trying file=") and name is not None:
            tries[name].append((step, message[len(b"  trying file="):]))
    return tries


def assert_resolves_like_the_loader(inspection: Inspection, *, cwd=None, env=None) -> None:
    """The inspection lists what the loader lists, in its order, with the same paths, and each
    library the loader searched for was found at the step of the search nixld says."""
    assert nixld_lists(inspection) == loader_lists(inspection, cwd=cwd, env=env)
    tries = loader_tries(inspection, cwd=cwd, env=env)
    for library in inspection.libraries:
        if library.path is not None and library.via in {*SEARCH_STEPS.values(), "cache"}:
            assert (library.via, library.path) == tries[library.soname][-1], library


def assert_resolves_like_the_loader_apart_from_where_the_loader_goes(inspection: Inspection) -> None:
    """assert_resolves_like_the_loader, except that the loader's own place in the list is not
    compared: see test_the_loader_is_listed_where_the_loader_lists_itself_when_a_library_is_missing."""
    expected = [entry for entry in loader_lists(inspection) if entry[0] != THE_LOADER]
    assert [entry for entry in nixld_lists(inspection) if entry[0] != THE_LOADER] == expected
    assert (THE_LOADER, inspection.loader.path) in nixld_lists(inspection)


def library(inspection: Inspection, soname: bytes):
    """The entry for `soname` (there is exactly one)."""
    [entry] = [entry for entry in inspection.libraries if entry.soname == soname]
    return entry


def found(inspection: Inspection, soname: bytes) -> tuple[bytes | None, str | None]:
    entry = library(inspection, soname)
    return entry.path, entry.via


def warned(inspection: Inspection, *words: str) -> bool:
    return any(all(word in warning for word in words) for warning in inspection.warnings)


# ---------------------------------------------------------------------------------------------
# This machine's own programs and libraries


def _elf_type(path: str) -> int | None:
    """e_type of a 64-bit x86-64 ELF file; None for any other file. Read here, not by nixld."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:6] != b"\x7fELF\x02\x01":
        return None
    e_type, e_machine = struct.unpack_from("<HH", head, 16)
    return e_type if e_machine == EM_X86_64 else None


def _regular_files(directory: str, depth: int = 0) -> list[str]:
    """Regular files (not symlinks: those are the same files again) in name order, and those
    of subdirectories down to `depth` levels."""
    files = []
    for entry in sorted(os.scandir(directory), key=lambda entry: entry.name):
        if entry.is_symlink():
            continue
        if entry.is_dir() and depth > 0:
            files += _regular_files(entry.path, depth - 1)
        elif entry.is_file():
            files.append(entry.path)
    return files


@pytest.fixture(scope="module")
def machine_sample() -> dict[str, list[str]]:
    """Every x86-64 ELF program in /usr/bin and /usr/sbin, every shared object in
    /usr/lib/x86_64-linux-gnu and its subdirectories."""
    programs = [path for directory in ("/usr/bin", "/usr/sbin") for path in _regular_files(directory)
                if _elf_type(path) in (ET_EXEC, ET_DYN)]
    libraries = [path for path in _regular_files("/usr/lib/x86_64-linux-gnu", depth=1)
                 if _elf_type(path) == ET_DYN]
    return {"programs": programs, "libraries": libraries}


@pytest.fixture(scope="module")
def machine_inspector() -> Inspector:
    """One Inspector for the whole sample: each file is parsed once, as in `nixld inspect A B C`."""
    return Inspector()


def compare_with_the_loader(inspector: Inspector, files: list[str], env: dict, library_path: list[str]):
    """Inspect every file and have the loader trace it (in parallel, while nixld works);
    returns the inspections and a description of every file on which the two disagree."""
    inspections, disagreements = {}, []
    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 1)) as pool:
        traces = {path: pool.submit(run_loader, REAL_LOADER, path, library_path) for path in files}
        for path in files:
            try:
                inspection = inspections[path] = inspector.inspect(path, env=env)
            except nixld.NixLdError as error:
                disagreements.append(f"{path}: nixld says {error.message}")
                continue
            expected, got = parse_trace(traces[path].result(), REAL_LOADER), nixld_lists(inspection)
            if got != expected:
                disagreements.append(f"{path}\n  loader: {expected}\n  nixld:  {got}")
    return inspections, disagreements


def test_the_sample_of_this_machines_files_is_large(machine_sample):
    """An empty or broken glob must not pass for agreement. (A Debian workstation has 600 or
    more of each; a fresh Debian container with the test dependencies, a few hundred.)"""
    assert len(machine_sample["programs"]) >= 150
    assert len(machine_sample["libraries"]) >= 100


@pytest.mark.parametrize("kind", ["programs", "libraries"])
def test_this_machines_files_resolve_exactly_as_the_loader_lists_them(machine_sample, machine_inspector, kind):
    files = machine_sample[kind]
    _, disagreements = compare_with_the_loader(machine_inspector, files, environment(),
                                               [NO_NIX_LD_LIBRARY_DIR])
    assert not disagreements, (f"{len(disagreements)} of {len(files)} {kind} resolve otherwise than "
                               f"{REAL_LOADER} lists them:\n" + "\n".join(disagreements[:10]))


def test_a_library_on_the_library_path_comes_before_the_cache_for_every_file_that_needs_it(
        machine_sample, machine_inspector, tmp_path):
    """A copy of libz.so.1 in LD_LIBRARY_PATH: every program and library that needs it, however
    deep, takes the copy, as the loader does."""
    copies = tmp_path / "copies"
    copies.mkdir()
    cache = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, timeout=TIMEOUT).stdout
    libz = re.search(rb"^\s*libz\.so\.1 \(libc6,x86-64\) => (\S+)$", cache, re.MULTILINE)[1]
    shutil.copy(os.fsdecode(libz), copies / "libz.so.1")
    files = machine_sample["programs"] + machine_sample["libraries"]
    inspections, disagreements = compare_with_the_loader(
        machine_inspector, files, environment(LD_LIBRARY_PATH=str(copies)), [str(copies), NO_NIX_LD_LIBRARY_DIR])
    assert not disagreements, (f"{len(disagreements)} of {len(files)} files resolve otherwise than "
                               f"{REAL_LOADER} lists them:\n" + "\n".join(disagreements[:10]))
    takers = [path for path, inspection in inspections.items()
              if (as_bytes(copies / "libz.so.1"), "library-path") in
              [(entry.path, entry.via) for entry in inspection.libraries]]
    assert len(takers) >= 10, takers


# ---------------------------------------------------------------------------------------------
# The order of the search: RPATH, the library path, RUNPATH, the cache, the system directories

LIBRARY_PATH_DOORS = ["LD_LIBRARY_PATH", "-L", "NIX_LD_LIBRARY_PATH"]


def through(door: str, directory) -> tuple[list, dict]:
    """(libs, variables) that put `directory` on the library path through `door`."""
    if door == "-L":
        return [str(directory)], {}
    return [], {door: str(directory)}


@pytest.mark.parametrize("door", LIBRARY_PATH_DOORS)
def test_rpath_is_searched_before_the_library_path(inspect_tree, door):
    prec = inspect_tree.root / "prec"
    libs, variables = through(door, prec / "b")
    inspection = inspect(prec / "rpath-program", libs, **variables)
    assert inspection.rpath == (as_bytes(prec / "a"),) and inspection.runpath == ()
    assert found(inspection, b"libprec.so") == (as_bytes(prec / "a/libprec.so"), "rpath")
    assert_resolves_like_the_loader(inspection)


@pytest.mark.parametrize("door", LIBRARY_PATH_DOORS)
def test_runpath_is_searched_after_the_library_path(inspect_tree, door):
    prec = inspect_tree.root / "prec"
    libs, variables = through(door, prec / "b")
    inspection = inspect(prec / "runpath-program", libs, **variables)
    assert inspection.runpath == (as_bytes(prec / "a"),) and inspection.rpath == ()
    assert found(inspection, b"libprec.so") == (as_bytes(prec / "b/libprec.so"), "library-path")
    assert_resolves_like_the_loader(inspection)


def test_runpath_finds_what_the_library_path_does_not_have(inspect_tree):
    prec = inspect_tree.root / "prec"
    inspection = inspect(prec / "runpath-program", LD_LIBRARY_PATH=str(inspect_tree.root / "chain/empty"))
    assert found(inspection, b"libprec.so") == (as_bytes(prec / "a/libprec.so"), "runpath")
    assert_resolves_like_the_loader(inspection)


def test_the_executables_rpath_finds_the_libraries_of_its_libraries(inspect_tree):
    """libmid.so has no path of its own: its libleaf.so is found in the program's RPATH."""
    chain = inspect_tree.root / "chain"
    inspection = inspect(chain / "rpath-program")
    assert found(inspection, b"libmid.so") == (as_bytes(chain / "mid/libmid.so"), "rpath")
    assert found(inspection, b"libleaf.so") == (as_bytes(chain / "leaf/libleaf.so"), "rpath")
    assert library(inspection, b"libleaf.so").needed_by == (as_bytes(chain / "mid/libmid.so"),)
    assert inspection.missing == ()
    assert_resolves_like_the_loader(inspection)


def test_an_rpath_serves_the_libraries_loaded_by_the_libraries_it_found(inspect_tree):
    """The program's RPATH names only holder/; libholder.so's RPATH names mid/ and leaf/, and
    libmid.so, which it loaded, finds libleaf.so there: RPATH is inherited down the chain."""
    chain = inspect_tree.root / "chain"
    inspection = inspect(chain / "holder-program")
    assert inspection.rpath == (as_bytes(chain / "holder"),)
    assert found(inspection, b"libholder.so") == (as_bytes(chain / "holder/libholder.so"), "rpath")
    assert found(inspection, b"libmid.so") == (as_bytes(chain / "mid/libmid.so"), "rpath")
    assert found(inspection, b"libleaf.so") == (as_bytes(chain / "leaf/libleaf.so"), "rpath")
    assert_resolves_like_the_loader(inspection)


def test_runpath_is_not_inherited_by_the_libraries_it_found(inspect_tree):
    chain = inspect_tree.root / "chain"
    inspection = inspect(chain / "runpath-program")
    assert inspection.runpath == (as_bytes(chain / "mid"), as_bytes(chain / "leaf"))
    assert found(inspection, b"libmid.so") == (as_bytes(chain / "mid/libmid.so"), "runpath")
    assert found(inspection, b"libleaf.so") == (None, None)
    assert inspection.missing == (b"libleaf.so",)
    assert library(inspection, b"libleaf.so").needed_by == (as_bytes(chain / "mid/libmid.so"),)
    assert_resolves_like_the_loader_apart_from_where_the_loader_goes(inspection)


def test_a_library_with_a_runpath_ignores_the_rpath_of_the_program_that_loaded_it(inspect_tree):
    """The program's RPATH names runmid/ and leaf/; librunmid.so has a RUNPATH (of an empty
    directory), so its libleaf.so is not looked for in the program's RPATH."""
    chain = inspect_tree.root / "chain"
    inspection = inspect(chain / "runmid-program")
    assert found(inspection, b"librunmid.so") == (as_bytes(chain / "runmid/librunmid.so"), "rpath")
    assert inspection.missing == (b"libleaf.so",)
    assert_resolves_like_the_loader_apart_from_where_the_loader_goes(inspection)


def _supported_hwcaps(loader: str, env=None) -> list[bytes]:
    """The subdirectories, glibc-hwcaps and legacy, that `ld.so --help` says the loader
    searches (with the variables `env` in its environment), in its order of priority."""
    help_text = subprocess.run([loader, "--help"], env=env, capture_output=True, timeout=TIMEOUT).stdout
    return re.findall(rb"^  (\S+) \(supported, searched\)$", help_text, re.MULTILINE)


def _best_hwcaps_copy(world, env=None) -> Path:
    """cache_world's copy of libhwc.so.1 that the loader takes with the variables `env` (and no
    other) in its environment: the one in the first of the glibc-hwcaps subdirectories it
    searches, else the one in hw/ itself."""
    searched = [name.decode() for name in _supported_hwcaps(REAL_LOADER, env or {})
                if name.decode() in X86_64_HWCAPS]
    return world.hw / (f"glibc-hwcaps/{searched[0]}" if searched else "") / "libhwc.so.1"


# Masks AVX-512 (GLIBC_TUNABLES' glibc.cpu.hwcaps), which takes x86-64-v4 out of the search.
WITHOUT_AVX512 = {"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F"}


@pytest.mark.parametrize("variables", [{}, WITHOUT_AVX512], ids=["as-the-cpu-allows", "avx512-masked"])
def test_the_best_glibc_hwcaps_subdirectory_the_loader_searches_is_taken(cache_world, variables):
    """glibc 2.36 ranks x86-64-v4, v3 and v2 in that order and searches those the CPU supports
    and GLIBC_TUNABLES leaves, as `ld.so --help` lists them: of the copies of libhwc.so.1 in all
    three, the best one searched is taken, as the loader takes it."""
    assert b"x86-64-v4" not in _supported_hwcaps(REAL_LOADER, WITHOUT_AVX512)
    inspection = inspect(cache_world.runpath_program, **variables)
    assert found(inspection, b"libhwc.so.1") == (as_bytes(_best_hwcaps_copy(cache_world, variables)), "runpath")
    assert_resolves_like_the_loader(inspection, env=variables)


def test_a_glibc_hwcaps_subdirectory_is_searched_before_its_directory(inspect_tree):
    hw = inspect_tree.root / "hw"
    inspection = inspect(hw / "prog")
    expected = hw / ("glibc-hwcaps/x86-64-v2/libhw.so" if b"x86-64-v2" in _supported_hwcaps(REAL_LOADER)
                     else "libhw.so")
    assert found(inspection, b"libhw.so") == (as_bytes(expected), "runpath")
    assert_resolves_like_the_loader(inspection)


def test_legacy_capability_subdirectories_are_searched_tls_first(inspect_tree):
    """glibc 2.36 still tries tls/, the platform's and the other legacy subdirectories, in
    that order of preference, before the directory itself."""
    legacy = inspect_tree.root / "hw/legacy"
    inspection = inspect(inspect_tree.root / "hw/prog-legacy")
    expected = legacy / ("tls/liblegacy.so" if b"tls" in _supported_hwcaps(REAL_LOADER) else "liblegacy.so")
    assert found(inspection, b"liblegacy.so") == (as_bytes(expected), "runpath")
    assert_resolves_like_the_loader(inspection)


def test_the_needs_of_a_nodefaultlib_library_are_not_looked_for_in_the_cache_or_system_directories(inspect_tree):
    nodeflib = inspect_tree.root / "nodeflib"
    inspection = inspect(nodeflib / "prog")
    assert found(inspection, b"libnodef.so") == (as_bytes(nodeflib / "libnodef.so"), "runpath")
    assert inspection.missing == (b"libm.so.6",)
    assert library(inspection, b"libm.so.6").needed_by == (as_bytes(nodeflib / "libnodef.so"),)
    # libc.so.6, which libnodef.so needs too, was already loaded for the program.
    assert found(inspection, b"libc.so.6")[1] == "cache"
    assert_resolves_like_the_loader_apart_from_where_the_loader_goes(inspection)


def test_the_needs_of_a_nodefaultlib_library_are_still_found_on_the_library_path(inspect_tree):
    nodeflib = inspect_tree.root / "nodeflib"
    inspection = inspect(nodeflib / "prog", [str(nodeflib / "copies")])
    assert found(inspection, b"libm.so.6") == (as_bytes(nodeflib / "copies/libm.so.6"), "library-path")
    assert inspection.missing == ()
    assert_resolves_like_the_loader(inspection)


def test_a_nodefaultlib_library_shares_a_library_already_loaded_by_name(inspect_tree):
    nodeflib = inspect_tree.root / "nodeflib"
    inspection = inspect(nodeflib / "prog-with-libm")
    assert found(inspection, b"libm.so.6")[1] == "cache"
    assert library(inspection, b"libm.so.6").needed_by == (as_bytes(nodeflib / "prog-with-libm"), as_bytes(nodeflib / "libnodef.so"))
    assert inspection.missing == ()
    assert_resolves_like_the_loader(inspection)


@pytest.mark.parametrize("door", LIBRARY_PATH_DOORS)
def test_origin_in_the_library_path_is_the_programs_directory(inspect_tree, door):
    """glibc expands $ORIGIN (and $LIB, $PLATFORM) in LD_LIBRARY_PATH and --library-path too,
    with the program's directory: `-L '$ORIGIN/gone'` finds missing/gone/libgone.so."""
    missing = inspect_tree.root / "missing"
    libs, variables = through(door, "$ORIGIN/gone")
    inspection = inspect(missing / "prog", libs, **variables)
    assert found(inspection, b"libgone.so") == (as_bytes(missing / "gone/libgone.so"), "library-path")
    assert_resolves_like_the_loader(inspection)


# ---------------------------------------------------------------------------------------------
# Names: $ORIGIN and the other tokens, paths, the same file under two names, missing libraries


def test_origin_is_the_directory_of_the_object_whose_path_names_it(inspect_tree):
    """The program's RUNPATH ${ORIGIN}/../lib finds liborigin.so; liborigin.so's own RUNPATH
    $ORIGIN/deps is taken from where liborigin.so was found."""
    origin = inspect_tree.root / "origin"
    inspection = inspect(origin / "bin/prog")
    assert inspection.runpath == (b"${ORIGIN}/../lib",)
    assert found(inspection, b"liborigin.so") == (as_bytes(origin / "bin/../lib/liborigin.so"), "runpath")
    assert found(inspection, b"libdeep.so") == (as_bytes(origin / "bin/../lib/deps/libdeep.so"), "runpath")
    assert_resolves_like_the_loader(inspection)


def test_origin_is_expanded_in_an_rpath_as_in_a_runpath(inspect_tree):
    origin = inspect_tree.root / "origin"
    inspection = inspect(origin / "bin/prog-rpath")
    assert inspection.rpath == (b"$ORIGIN/../lib",)
    assert found(inspection, b"liborigin.so") == (as_bytes(origin / "bin/../lib/liborigin.so"), "rpath")
    assert_resolves_like_the_loader(inspection)


def test_origin_is_the_directory_of_the_path_as_given_not_of_a_symlinks_target(inspect_tree, tmp_path):
    """Through a symlink two levels down elsewhere, ${ORIGIN}/../lib names a directory that does
    not exist: glibc does not resolve the symlink, and neither does nixld."""
    deeper = tmp_path / "elsewhere/deeper"
    deeper.mkdir(parents=True)
    (deeper / "prog").symlink_to(inspect_tree.root / "origin/bin/prog")
    inspection = inspect(deeper / "prog")
    assert inspection.missing == (b"liborigin.so",)
    assert warned(inspection, "${ORIGIN}/../lib", str(tmp_path / "elsewhere/deeper/../lib"), "does not exist")
    assert_resolves_like_the_loader(inspection)


def test_a_relative_program_path_gives_an_origin_made_absolute_from_the_working_directory(
        inspect_tree, monkeypatch):
    origin = inspect_tree.root / "origin"
    monkeypatch.chdir(origin / "bin")
    inspection = inspect("./prog")
    assert inspection.path == b"./prog"
    assert found(inspection, b"liborigin.so") == (as_bytes(origin) + b"/bin/./../lib/liborigin.so", "runpath")
    assert_resolves_like_the_loader(inspection, cwd=origin / "bin")


def test_lib_and_platform_are_expanded_as_the_loader_expands_them(inspect_tree):
    tokens = inspect_tree.root / "tokens"
    inspection = inspect(tokens / "prog")
    assert inspection.rpath == (as_bytes(tokens) + b"/$LIB", as_bytes(tokens) + b"/${PLATFORM}")
    assert found(inspection, b"liblibtoken.so")[1] == "rpath"
    assert found(inspection, b"libplatformtoken.so")[1] == "rpath"
    assert_resolves_like_the_loader(inspection)


def test_origin_in_a_needed_entry_is_expanded_and_listed_under_the_expanded_path(inspect_tree):
    origin = inspect_tree.root / "origin"
    inspection = inspect(origin / "bin/needs-dst")
    assert inspection.needed[0] == b"$ORIGIN/libdst.so"
    assert found(inspection, as_bytes(origin / "bin/libdst.so")) == (as_bytes(origin / "bin/libdst.so"), "path")
    assert_resolves_like_the_loader(inspection)


def test_a_needed_entry_with_a_slash_is_opened_as_a_path_not_searched(inspect_tree):
    slash = inspect_tree.root / "slash"
    inspection = inspect(slash / "prog-absolute")
    assert inspection.needed[0] == as_bytes(slash / "libdir/libslash.so")
    assert found(inspection, as_bytes(slash / "libdir/libslash.so")) == (as_bytes(slash / "libdir/libslash.so"), "path")
    assert_resolves_like_the_loader(inspection)


def test_a_relative_needed_path_is_taken_from_the_working_directory(inspect_tree, monkeypatch):
    slash = inspect_tree.root / "slash"
    monkeypatch.chdir(slash)
    here = inspect(slash / "prog-relative")
    assert here.needed[0] == b"./libdir/libslash.so"
    assert found(here, b"./libdir/libslash.so") == (b"./libdir/libslash.so", "path")
    assert_resolves_like_the_loader(here, cwd=slash)

    monkeypatch.chdir(inspect_tree.root)
    elsewhere = inspect(slash / "prog-relative")
    assert elsewhere.missing == (b"./libdir/libslash.so",)
    assert_resolves_like_the_loader(elsewhere, cwd=inspect_tree.root)


def test_one_file_under_several_names_is_loaded_once(inspect_tree):
    """libtwo.so is a symlink to libone.so and libthree.so a hard link: the loader maps the file
    once, under the first name, and so does nixld."""
    same = inspect_tree.root / "same"
    inspection = inspect(same / "prog")
    assert inspection.needed == (b"libone.so", b"libtwo.so", b"libthree.so", b"libc.so.6")
    assert [entry.soname for entry in inspection.libraries if entry.path and entry.path.startswith(as_bytes(same))] == [b"libone.so"]
    assert found(inspection, b"libone.so") == (as_bytes(same / "libone.so"), "runpath")
    assert_resolves_like_the_loader(inspection)


def test_a_library_missing_deep_in_the_tree_is_reported_with_who_needs_it(inspect_tree):
    missing = inspect_tree.root / "missing"
    inspection = inspect(missing / "prog")
    assert inspection.missing == (b"libgone.so",)
    assert found(inspection, b"libgone.so") == (None, None)
    assert library(inspection, b"libgone.so").needed_by == (as_bytes(missing / "lib/libmiddle.so"),)
    assert found(inspection, b"libtop.so") == (as_bytes(missing / "lib/libtop.so"), "runpath")
    assert found(inspection, b"libmiddle.so") == (as_bytes(missing / "lib/libmiddle.so"), "runpath")
    assert_resolves_like_the_loader_apart_from_where_the_loader_goes(inspection)


def test_the_library_that_was_missing_is_found_once_its_directory_is_given(inspect_tree):
    missing = inspect_tree.root / "missing"
    inspection = inspect(missing / "prog", [str(missing / "gone")])
    assert inspection.missing == ()
    assert found(inspection, b"libgone.so") == (as_bytes(missing / "gone/libgone.so"), "library-path")
    assert_resolves_like_the_loader(inspection)


def test_a_library_missing_for_two_objects_is_reported_as_needed_by_both(inspect_tree):
    missing = inspect_tree.root / "missing"
    inspection = inspect(missing / "prog-twice")
    assert set(inspection.missing) == {b"libgone.so"}
    needers = [needer for entry in inspection.libraries if entry.soname == b"libgone.so" for needer in entry.needed_by]
    assert sorted(needers) == sorted([as_bytes(missing / "prog-twice"), as_bytes(missing / "lib/libmiddle.so")])


def test_a_library_missing_for_two_objects_is_listed_as_often_as_the_loader_lists_it(inspect_tree):
    """In its trace the loader does not reuse an entry for a library it did not find: each
    object that needs libgone.so gets an entry "libgone.so => not found" of its own."""
    inspection = inspect(inspect_tree.root / "missing/prog-twice")
    assert_resolves_like_the_loader_apart_from_where_the_loader_goes(inspection)


def test_the_loader_is_listed_where_the_loader_lists_itself_when_a_library_is_missing(inspect_tree):
    """glibc puts itself in the list right after the object before it in the search order, in
    which libraries not found have no place: libleaf.so, which libmid.so needs and nothing
    provides, comes after the loader, which libc.so.6 needs."""
    inspection = inspect(inspect_tree.root / "chain/runpath-program")
    assert nixld_lists(inspection) == loader_lists(inspection)


@pytest.mark.parametrize("label", ["latin-1", "beyond-latin-1", "not-utf-8"])
def test_runpath_entries_are_bytes_not_text(inspect_tree, label):
    """A RUNPATH naming a directory called bibliothèque, lib€ or lib\\xff: the loader uses the
    bytes as they are, and so must nixld."""
    nonascii = inspect_tree.root / "nonascii"
    directory = as_bytes(nonascii) + b"/" + inspect_tree.non_ascii[label]
    inspection = inspect(nonascii / f"runpath-{label}")
    assert inspection.runpath == (directory,)
    assert found(inspection, b"libnonascii.so") == (directory + b"/libnonascii.so", "runpath")
    assert_resolves_like_the_loader(inspection)


@pytest.mark.parametrize("label", ["latin-1", "beyond-latin-1", "not-utf-8"])
def test_needed_names_are_bytes_not_text(inspect_tree, label):
    nonascii = inspect_tree.root / "nonascii"
    soname = inspect_tree.non_ascii[label] + b".so"
    inspection = inspect(nonascii / f"needs-{label}")
    assert inspection.needed[0] == soname
    assert found(inspection, soname) == (as_bytes(nonascii / f"needed-{label}") + b"/" + soname, "runpath")
    assert_resolves_like_the_loader(inspection)


# ---------------------------------------------------------------------------------------------
# Machines and classes


def test_a_foreign_program_resolves_through_the_configured_loader(uses_library, library_dirs):
    """The case nixld is for: an interpreter that does not exist here. The loader (NIX_LD) maps
    itself in its place, and lists itself under the program's interpreter name."""
    inspection = inspect(uses_library, [library_dirs.a])
    assert (inspection.interpreter_exists, inspection.loader.path) == (False, as_bytes(REAL_LOADER))
    assert found(inspection, b"libnixldtest.so") == (as_bytes(library_dirs.a) + b"/libnixldtest.so", "library-path")
    assert found(inspection, b"ld-linux-x86-64.so.2") == (as_bytes(REAL_LOADER), "loader")
    assert_resolves_like_the_loader(inspection)


def test_a_32_bit_library_in_the_way_is_skipped_and_named_in_a_warning(i386_decoys):
    decoy = i386_decoys
    inspection = inspect(decoy / "prog")
    assert found(inspection, b"libdecoy.so") == (as_bytes(decoy / "d64/libdecoy.so"), "runpath")
    assert warned(inspection, "skipped", str(decoy / "d32/libdecoy.so"), "i386", "x86_64")
    # The loader too tried the 32-bit file first.
    tried = [path for _, path in loader_tries(inspection)[b"libdecoy.so"]]
    assert tried.index(as_bytes(decoy / "d32/libdecoy.so")) < tried.index(as_bytes(decoy / "d64/libdecoy.so"))
    assert_resolves_like_the_loader(inspection)


def test_a_32_bit_library_on_the_library_path_is_skipped_too(i386_decoys):
    decoy = i386_decoys
    inspection = inspect(decoy / "plain-prog", LD_LIBRARY_PATH=f"{decoy / 'd32'}:{decoy / 'd64'}")
    assert found(inspection, b"libdecoy.so") == (as_bytes(decoy / "d64/libdecoy.so"), "library-path")
    assert warned(inspection, "skipped", str(decoy / "d32/libdecoy.so"))
    assert_resolves_like_the_loader(inspection)


def test_libraries_of_the_programs_machine_but_another_class_are_skipped_too(cache_world):
    """x32's libraries are EM_X86_64 like x86-64's, but 32-bit: the loader passes over the x32
    copy of libcls.so.1 first in the RUNPATH, and the i386 one, for the x86-64 one."""
    inspection = inspect(cache_world.decoy_program)
    assert found(inspection, b"libcls.so.1") == (as_bytes(cache_world.root / "lib64/libcls.so.1"), "runpath")
    assert warned(inspection, "skipped", str(cache_world.root / "libx32/libcls.so.1"), "x32 (32-bit)")
    assert warned(inspection, "skipped", str(cache_world.root / "lib32/libcls.so.1"), "i386 (32-bit)")
    assert_resolves_like_the_loader(inspection)


def test_a_library_of_the_right_class_gets_no_skip_warning(inspect_tree):
    inspection = inspect(inspect_tree.root / "prec/rpath-program")
    assert not warned(inspection, "skipped")


def test_a_32_bit_program_resolves_with_the_32_bit_loader_and_its_cache_and_directories(i386_programs):
    inspection = inspect(i386_programs.root / "prog32", NIX_LD_i686_linux=i386_programs.loader)
    assert (inspection.elf_class, inspection.machine, inspection.system) == (32, "i386", "i686_linux")
    assert (inspection.loader.path, inspection.loader.source) == (as_bytes(i386_programs.loader), "NIX_LD_i686_linux")
    assert inspection.loader.facts_source == "--help"
    assert inspection.missing == ()
    assert_resolves_like_the_loader(inspection)


def test_a_32_bit_program_skips_a_64_bit_library_in_its_way(i386_programs):
    i386 = i386_programs.root
    inspection = inspect(i386 / "prog32-lib", NIX_LD_i686_linux=i386_programs.loader)
    assert found(inspection, b"libthirty.so") == (as_bytes(i386 / "lib32/libthirty.so"), "runpath")
    assert warned(inspection, "skipped", str(i386 / "decoy64/libthirty.so"), "x86_64 (64-bit)", "i386 (32-bit)")
    assert_resolves_like_the_loader(inspection)


def test_a_32_bit_program_with_a_64_bit_loader_gets_a_warning_naming_the_variable_to_set(tmp_path):
    """No loader runs here, so the 32-bit program is a hand-made one (tests/crafted.py)."""
    program = write_dynamic_elf(tmp_path / "prog32", elf_class=32, machine=EM_386,
                                interpreter=b"/lib/ld-linux.so.2", needed=(b"libc.so.6",))
    inspection = inspect(program)
    assert inspection.loader.source == "NIX_LD"
    assert warned(inspection, REAL_LOADER, "NIX_LD_i686_linux")


@pytest.fixture
def aarch64_world(tmp_path):
    """A hand-made aarch64 program needing libfoo.so.1, with a RUNPATH of x86/ (an x86-64
    libfoo.so.1) then aarch64/ (an aarch64 libfoo.so.1, whose RUNPATH $ORIGIN finds its
    libbar.so.2), and a hand-made aarch64 loader."""
    x86, arm = tmp_path / "x86", tmp_path / "aarch64"
    x86.mkdir()
    arm.mkdir()
    program = write_dynamic_elf(tmp_path / "tool", machine=EM_AARCH64, entry=0x4000,
                                interpreter=b"/lib/ld-linux-aarch64.so.1", needed=(b"libfoo.so.1",),
                                runpath=as_bytes(x86) + b":" + as_bytes(arm))
    write_dynamic_elf(x86 / "libfoo.so.1", soname=b"libfoo.so.1")
    write_dynamic_elf(arm / "libfoo.so.1", machine=EM_AARCH64, soname=b"libfoo.so.1",
                      needed=(b"libbar.so.2",), runpath=b"$ORIGIN")
    write_dynamic_elf(arm / "libbar.so.2", machine=EM_AARCH64, soname=b"libbar.so.2")
    loader = write_dynamic_elf(tmp_path / "ld-linux-aarch64.so.1", machine=EM_AARCH64,
                               soname=b"ld-linux-aarch64.so.1")
    return program, loader, x86, arm


def test_an_aarch64_program_is_read_and_resolved_on_x86_64(aarch64_world):
    program, loader, x86, arm = aarch64_world
    inspection = inspect(program, NIX_LD_aarch64_linux=loader)
    assert (inspection.elf_class, inspection.machine, inspection.system) == (64, "aarch64", "aarch64_linux")
    assert (inspection.type, inspection.entry, inspection.static) == ("DYN", 0x4000, False)
    assert inspection.interpreter == b"/lib/ld-linux-aarch64.so.1"
    assert (inspection.needed, inspection.rpath, inspection.runpath) == ((b"libfoo.so.1",), (), (as_bytes(x86), as_bytes(arm)))
    assert (inspection.loader.path, inspection.loader.source, inspection.loader.exists) == (
        loader, "NIX_LD_aarch64_linux", True)
    assert [(entry.soname, entry.path, entry.via) for entry in inspection.libraries] == [
        (b"libfoo.so.1", as_bytes(arm / "libfoo.so.1"), "runpath"),
        (b"libbar.so.2", as_bytes(arm / "libbar.so.2"), "runpath"),
    ]
    assert warned(inspection, "skipped", str(x86 / "libfoo.so.1"), "x86_64 (64-bit)", "aarch64 (64-bit)")
    # Another machine's loader cannot be asked for its search path: glibc's defaults are assumed.
    assert inspection.loader.facts_source == "assumed"
    assert warned(inspection, "could not ask the loader", "assuming")


def test_an_aarch64_program_without_an_aarch64_loader_is_still_inspected(aarch64_world):
    program, _, _, arm = aarch64_world
    inspection = inspect(program)
    assert inspection.loader.source == "NIX_LD"
    assert warned(inspection, REAL_LOADER, "NIX_LD_aarch64_linux")
    assert found(inspection, b"libfoo.so.1") == (as_bytes(arm / "libfoo.so.1"), "runpath")


# ---------------------------------------------------------------------------------------------
# What else the report warns about


def test_rpath_and_runpath_entries_that_do_not_exist_are_named_in_warnings(inspect_tree):
    paths = inspect_tree.root / "paths"
    rpath = inspect(paths / "rpath-program")
    assert warned(rpath, "RPATH entry", str(paths / "nowhere-rpath"), "does not exist")
    runpath = inspect(paths / "runpath-program")
    assert warned(runpath, "RUNPATH entry", str(paths / "nowhere-runpath"), "does not exist")
    assert warned(runpath, "RUNPATH entry $ORIGIN/absent", str(paths / "absent"), "does not exist")
    assert rpath.missing == runpath.missing == ()


def test_entries_that_exist_get_no_such_warning(inspect_tree):
    assert not warned(inspect(inspect_tree.root / "chain/rpath-program"), "does not exist")


@pytest.mark.parametrize("mode", [0o4755, 0o2755])
def test_a_set_user_or_group_id_program_gets_a_warning(inspect_tree, tmp_path, mode):
    program = tmp_path / "privileged"
    shutil.copy(inspect_tree.root / "plain", program)
    os.chmod(program, mode)
    assert warned(inspect(program), str(program), "set-user-ID or set-group-ID")


def test_a_program_without_set_id_bits_gets_no_such_warning(inspect_tree):
    assert not warned(inspect(inspect_tree.root / "plain"), "set-user-ID")


@pytest.mark.parametrize("fixture, kind, pie", [("static_probe", "statically linked", False),
                                                ("static_pie_probe", "static-pie", True)])
def test_a_static_program_needs_no_loader_and_no_libraries(request, fixture, kind, pie):
    program = request.getfixturevalue(fixture)
    inspection = inspect(program)
    assert (inspection.static, inspection.pie, inspection.interpreter) == (True, pie, None)
    assert inspection.libraries == inspection.missing == ()
    assert warned(inspection, program, kind, "runs it directly")


def test_a_program_that_mentions_proc_self_exe_gets_a_warning(probe):
    assert warned(inspect(probe), probe, "/proc/self/exe")


def test_a_program_that_does_not_mention_proc_self_exe_gets_no_such_warning(inspect_tree):
    assert not warned(inspect(inspect_tree.root / "plain"), "/proc/self/exe")


def test_a_shared_library_is_inspected_with_a_warning_that_it_is_no_program(inspect_tree):
    libmid = inspect_tree.root / "chain/mid/libmid.so"
    inspection = inspect(libmid, [str(inspect_tree.root / "chain/leaf")])
    assert (inspection.interpreter, inspection.static, inspection.pie) == (None, False, False)
    assert warned(inspection, str(libmid), "no interpreter")
    assert found(inspection, b"libleaf.so") == (as_bytes(inspect_tree.root / "chain/leaf/libleaf.so"), "library-path")
    assert_resolves_like_the_loader(inspection)


def test_a_missing_loader_still_gives_a_report_with_a_warning(inspect_tree, tmp_path):
    absent = tmp_path / "no-such-ld.so"
    inspection = nixld.inspect(inspect_tree.root / "prec/rpath-program",
                               env={"NIX_LD": str(absent), "NIX_LD_LIBRARY_PATH": NO_NIX_LD_LIBRARY_DIR})
    assert (inspection.loader.path, inspection.loader.source, inspection.loader.exists) == (as_bytes(absent), "NIX_LD", False)
    assert warned(inspection, str(absent), "does not exist")
    assert found(inspection, b"libprec.so") == (as_bytes(inspect_tree.root / "prec/a/libprec.so"), "rpath")


def test_without_nix_ld_the_report_names_nix_lds_default_loader(uses_library):
    inspection = nixld.inspect(uses_library, env={})
    assert inspection.loader.path == b"/run/current-system/sw/share/nix-ld/lib/ld.so"
    assert inspection.loader.source == "default"
    assert inspection.search_path == (b"/run/current-system/sw/share/nix-ld/lib",)
    assert warned(inspection, "does not exist", "NIX_LD_x86_64_linux", "programs.nix-ld.enable")


def test_without_nix_ld_or_its_default_the_programs_own_interpreter_is_the_loader_as_for_run(inspect_tree):
    inspection = nixld.inspect(inspect_tree.root / "plain", env={})
    assert (inspection.loader.path, inspection.loader.source) == (as_bytes(REAL_LOADER), "interpreter")
    assert inspection.loader.path == nixld.plan_launch(inspect_tree.root / "plain", env={}).loader
    assert inspection.missing == ()


def test_the_loader_is_chosen_as_nixld_run_chooses_it(inspect_tree, tmp_path):
    other = shutil.copy(REAL_LOADER, tmp_path / "ld.so")
    plain = inspect_tree.root / "plain"
    both = environment(NIX_LD="/nonexistent/ld.so", NIX_LD_x86_64_linux=str(other))
    assert nixld.inspect(plain, env=both).loader.source == "NIX_LD_x86_64_linux"
    chosen = nixld.inspect(plain, env=both, ld=REAL_LOADER).loader
    assert (chosen.path, chosen.source) == (as_bytes(REAL_LOADER), "--ld")


def test_nix_ld_1_x_spellings_are_read_as_nixld_run_reads_them(inspect_tree, tmp_path):
    other = shutil.copy(REAL_LOADER, tmp_path / "ld.so")
    plain = inspect_tree.root / "plain"
    old = environment(NIX_LD="/nonexistent/ld.so", **{"NIX_LD_x86_64-linux": str(other),
                                                        "NIX_LD_LIBRARY_PATH_x86_64-linux": "/old/lib"})
    inspection = nixld.inspect(plain, env=old)
    assert (inspection.loader.path, inspection.loader.source) == (as_bytes(other), "NIX_LD_x86_64-linux")
    assert inspection.search_path == (b"/old/lib",)
    assert inspection.loader.path == nixld.plan_launch(plain, env=old).loader


def test_the_search_path_is_the_library_path_nixld_run_hands_the_loader(inspect_tree):
    env = environment(LD_LIBRARY_PATH="/first::/shared", NIX_LD_LIBRARY_PATH="/shared,/nix")
    libs = ["/extra", "/first"]
    inspection = nixld.inspect(inspect_tree.root / "plain", libs, env=env)
    assert inspection.search_path == (b"/first", b"/shared", b"/extra", b"/nix")
    assert inspection.search_path == nixld.plan_launch(inspect_tree.root / "plain", libs, env=env).library_path


def test_a_program_named_without_a_slash_is_found_on_path(inspect_tree):
    inspection = inspect("rpath-program", PATH=str(inspect_tree.root / "prec"))
    assert inspection.path == as_bytes(inspect_tree.root / "prec/rpath-program")


def test_a_dynamic_section_without_string_tags_needs_no_string_table(tmp_path):
    """A program with a PT_DYNAMIC holding nothing but DT_NULL (and no section headers), as
    crafted.write_elf writes it: nothing to look up, so nothing needed, not a crash."""
    program = write_elf(tmp_path / "tool", interpreter=REAL_LOADER.encode())
    inspection = inspect(program)
    assert (inspection.needed, inspection.libraries) == ((), ())


def test_a_loader_without_a_string_table_is_used_not_a_crash(tmp_path):
    """crafted.write_loader's loaders (test_plan.py's) have such a dynamic section too."""
    program = write_dynamic_elf(tmp_path / "tool", interpreter=b"/lib/ld-linux-aarch64.so.1", machine=EM_AARCH64)
    loader = write_loader(tmp_path / "ld.so", machine=EM_AARCH64)
    inspection = inspect(program, NIX_LD_aarch64_linux=loader)
    assert (inspection.loader.path, inspection.loader.exists) == (loader, True)


# ---------------------------------------------------------------------------------------------
# The command line


def nixld_inspect(nixld_script, *args, env=None, cwd=None, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    """`nixld inspect ARGS` in a process of its own (the CLI reads its caller's environment
    from /proc/self/environ)."""
    return subprocess.run([nixld_script, "inspect", *map(os.fsdecode, args)],
                          env={"LANG": "C.UTF-8", **(environment() if env is None else env)},
                          cwd=cwd, capture_output=True, timeout=timeout)


def assert_one_nixld_line(stderr: bytes, *culprits: str) -> None:
    text = stderr.decode(errors="backslashreplace")
    assert "Traceback" not in text
    assert text.startswith("nixld: ") and text.endswith("\n") and text.count("\n") == 1, text
    for culprit in culprits:
        assert culprit in text, (culprit, text)


def test_json_gives_every_field_with_its_type(nixld_script, inspect_tree):
    chain = inspect_tree.root / "chain"
    program = chain / "rpath-program"
    result = nixld_inspect(nixld_script, "--json", program)
    assert (result.returncode, result.stderr) == (0, b"")
    document = json.loads(result.stdout)
    types = {"path": str, "class": int, "machine": str, "system": str, "type": str, "pie": bool,
             "entry": int, "interpreter": str, "static": bool, "needed": list, "rpath": list,
             "runpath": list, "loader": dict, "search_path": list, "libraries": list, "missing": list,
             "warnings": list, "exit_status": int}
    assert {key: type(document[key]) for key in types} == types
    assert (document["run_error"], document["exit_status"]) == (None, 0)
    entry = struct.unpack_from("<Q", program.read_bytes(), 24)[0]
    assert {key: document[key] for key in ("path", "class", "machine", "system", "type", "pie", "entry",
                                           "interpreter", "static", "needed", "rpath", "runpath", "missing")} == {
        "path": str(program), "class": 64, "machine": "x86_64", "system": "x86_64_linux", "type": "DYN",
        "pie": True, "entry": entry, "interpreter": REAL_LOADER, "static": False,
        "needed": ["libmid.so", "libc.so.6"], "rpath": [str(chain / "mid"), str(chain / "leaf")],
        "runpath": [], "missing": [],
    }
    assert {key: document["loader"][key] for key in ("path", "source", "exists")} == {
        "path": REAL_LOADER, "source": "NIX_LD", "exists": True}
    assert document["search_path"] == [NO_NIX_LD_LIBRARY_DIR]
    for library_document in document["libraries"]:
        assert {key: type(library_document[key]) for key in ("soname", "path", "via", "needed_by")} == {
            "soname": str, "path": str, "via": str, "needed_by": list}
        assert all(isinstance(path, str) for path in library_document["needed_by"])
    assert all(isinstance(warning, str) for warning in document["warnings"])
    # The command line and the API give the same document.
    assert document == inspect(program).as_json()


def test_json_for_a_missing_library_has_a_null_path_and_names_who_needs_it(nixld_script, inspect_tree):
    missing = inspect_tree.root / "missing"
    result = nixld_inspect(nixld_script, "--json", missing / "prog")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert (document["missing"], document["exit_status"], document["run_error"]) == (["libgone.so"], 1, None)
    [gone] = [entry for entry in document["libraries"] if entry["soname"] == "libgone.so"]
    assert (gone["path"], gone["via"], gone["needed_by"]) == (None, None, [str(missing / "lib/libmiddle.so")])


def test_json_for_several_programs_is_a_list_with_failures_as_error_objects(nixld_script, inspect_tree, tmp_path):
    absent = tmp_path / "absent"
    programs = [inspect_tree.root / "plain", absent, inspect_tree.root / "missing/prog"]
    result = nixld_inspect(nixld_script, "--json", *programs)
    assert result.returncode == 127
    documents = json.loads(result.stdout)
    assert [document["path"] for document in documents] == [str(program) for program in programs]
    assert documents[1] == {"path": str(absent), "error": documents[1]["error"], "exit_status": 127}
    assert str(absent) in documents[1]["error"]
    assert documents[2]["missing"] == ["libgone.so"]
    assert_one_nixld_line(result.stderr, str(absent))


def test_tree_shows_each_library_under_the_object_that_needs_it(nixld_script, inspect_tree):
    chain = inspect_tree.root / "chain"
    result = nixld_inspect(nixld_script, "--tree", chain / "rpath-program")
    assert (result.returncode, result.stderr) == (0, b"")
    lines = result.stdout.decode().splitlines()
    assert lines[0] == f"{chain / 'rpath-program'} (interpreter => {REAL_LOADER})"

    def depth_of(text: str) -> tuple[int, int]:
        [(index, line)] = [(index, line) for index, line in enumerate(lines) if line.strip().startswith(text)]
        return index, (len(line) - len(line.lstrip(" "))) // 4

    mid, leaf = depth_of(f"libmid.so => {chain / 'mid/libmid.so'}"), depth_of(f"libleaf.so => {chain / 'leaf/libleaf.so'}")
    assert mid[1] == 1 and leaf[1] == 2
    assert mid[0] < leaf[0]
    # Nothing at libmid.so's depth comes between libmid.so and its child.
    assert all(line.startswith("        ") for line in lines[mid[0] + 1:leaf[0]])


def test_the_report_names_each_missing_library_and_who_needs_it(nixld_script, inspect_tree):
    missing = inspect_tree.root / "missing"
    result = nixld_inspect(nixld_script, missing / "prog")
    assert result.returncode == 1
    report = result.stdout.decode()
    [line] = [line for line in report.splitlines() if "libgone.so" in line]
    assert "not found" in line and f"needed by {missing / 'lib/libmiddle.so'}" in line
    assert f"{missing / 'lib/libtop.so'} (runpath)" in report


def test_a_non_utf8_program_name_is_printed_as_its_bytes(nixld_script, inspect_tree, tmp_path):
    program = as_bytes(tmp_path) + b"/tool\xff"
    shutil.copy(inspect_tree.root / "plain", os.fsdecode(program))
    for output in ([], ["--tree"]):
        result = nixld_inspect(nixld_script, *output, program)
        assert (result.returncode, result.stderr) == (0, b"")
        assert result.stdout.startswith(program)


@pytest.mark.parametrize("program, libs, status", [
    ("plain", [], 0),
    ("missing/prog", [], 1),
    ("missing/prog", ["missing/gone"], 0),
])
def test_exit_status_is_0_when_everything_resolves_and_1_when_something_is_missing(
        nixld_script, inspect_tree, program, libs, status):
    options = [arg for directory in libs for arg in ("-L", inspect_tree.root / directory)]
    for output in ([], ["--json"], ["--tree"]):
        result = nixld_inspect(nixld_script, *output, *options, inspect_tree.root / program)
        assert (result.returncode, result.stderr) == (status, b"")


def test_exit_status_of_several_programs_is_the_worst(nixld_script, inspect_tree, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a program\n")
    root = inspect_tree.root
    assert nixld_inspect(nixld_script, root / "plain", root / "missing/prog").returncode == 1
    result = nixld_inspect(nixld_script, root / "missing/prog", text, root / "plain")
    assert result.returncode == 126
    assert_one_nixld_line(result.stderr, str(text))
    # The programs after the failure are still reported.
    assert str(root / "plain") in result.stdout.decode()


@pytest.mark.parametrize("args", [[], ["--json", "--tree", "/bin/true"], ["--frobnicate", "/bin/true"],
                                  ["-L", "", "/bin/true"], ["--ld=", "/bin/true"], ["-L"]])
def test_usage_errors_exit_2_with_one_line(nixld_script, args):
    result = nixld_inspect(nixld_script, *args)
    assert (result.returncode, result.stdout) == (2, b"")
    assert_one_nixld_line(result.stderr, "inspect")


def test_help_describes_the_options_and_exits_0(nixld_script):
    result = nixld_inspect(nixld_script, "--help")
    assert result.returncode == 0
    for option in ("--json", "--tree", "--ld", "-L"):
        assert option.encode() in result.stdout


def test_ld_and_library_path_options_reach_the_inspection(nixld_script, inspect_tree):
    missing = inspect_tree.root / "missing"
    result = nixld_inspect(nixld_script, "--json", "--ld", REAL_LOADER, "-L", missing / "gone", missing / "prog",
                           env={"NIX_LD": "/nonexistent/ld.so", "NIX_LD_LIBRARY_PATH": NO_NIX_LD_LIBRARY_DIR})
    document = json.loads(result.stdout)
    assert (document["loader"]["path"], document["loader"]["source"]) == (REAL_LOADER, "--ld")
    assert document["search_path"] == [str(missing / "gone"), NO_NIX_LD_LIBRARY_DIR]
    assert (result.returncode, document["missing"]) == (0, [])


@pytest.mark.parametrize("kind", ["a FIFO", "a directory"])
def test_a_loader_that_is_not_a_regular_file_is_warned_of_at_once_in_the_words_of_nixld_run(nixld_script, inspect_tree,
                                                                                         tmp_path, kind):
    """Opening a FIFO for reading waits for a writer; the kernel refuses such an interpreter
    at once, and so do `nixld run` and `nixld inspect`, alike."""
    loader = tmp_path / "ld.so"
    os.mkfifo(loader) if kind == "a FIFO" else loader.mkdir()
    env = environment(NIX_LD=str(loader))
    program = inspect_tree.root / "plain"
    result = nixld_inspect(nixld_script, "--json", program, env=env, timeout=AT_ONCE)
    refused = subprocess.run([nixld_script, "run", program], env=env, capture_output=True, timeout=AT_ONCE)
    assert (refused.returncode, refused.stderr) == (
        126, f"nixld: loader {loader} (from NIX_LD) is not a regular file: set NIX_LD to the path of an x86_64 "
             "loader (glibc's ld.so)\n".encode())
    assert (result.returncode, result.stderr) == (refused.returncode, refused.stderr)
    document = json.loads(result.stdout)
    assert (document["loader"]["path"], document["loader"]["exists"]) == (str(loader), True)
    assert refused.stderr.decode()[len("nixld: "):-1] == document["run_error"]
    assert document["run_error"] in document["warnings"]


# What `nixld run` refuses for the loader, or for a program no loader was named for: each case
# is (arguments before PROGRAM, the environment's changes, the program: "plain" or a hand-made
# aarch64 one), and a static program, whose loader does not matter, is the control.
RUN_VERDICTS = {
    "--ld names nothing": (["--ld", "/nonexistent/ld.so"], {}, "plain"),
    "NIX_LD names nothing": ([], {"NIX_LD": "/nonexistent/ld.so"}, "plain"),
    "NIX_LD names a loader of another machine": ([], {"NIX_LD": "aarch64-loader"}, "plain"),
    "NIX_LD names a program, not a loader": ([], {"NIX_LD": "/usr/bin/true"}, "plain"),
    "nothing names a loader for another machine's program": ([], {}, "aarch64-program"),
    "a static program with NIX_LD naming nothing": ([], {"NIX_LD": "/nonexistent/ld.so"}, "static"),
}


@pytest.mark.parametrize("case", RUN_VERDICTS)
def test_inspect_exits_with_the_status_and_the_line_of_nixld_run_and_still_gives_its_report(
        nixld_script, inspect_tree, static_probe, tmp_path, case):
    """One verdict: where `nixld run` would refuse the launch, inspect exits with run's status
    and says run's line on stderr, after which its report (text, tree or JSON) still says why."""
    options, changes, which = RUN_VERDICTS[case]
    made = {"aarch64-loader": lambda: write_loader(tmp_path / "ld-linux-aarch64.so.1", machine=EM_AARCH64),
            "aarch64-program": lambda: write_dynamic_elf(tmp_path / "arm-tool", machine=EM_AARCH64,
                                                         interpreter=b"/lib/ld-linux-aarch64.so.1")}
    env = environment(**{name: os.fsdecode(made[value]()) if value in made else value
                         for name, value in changes.items()})
    program = os.fsdecode({"plain": lambda: inspect_tree.root / "plain", "static": lambda: static_probe}.get(
        which, made.get(which))())
    ran = subprocess.run([nixld_script, "run", *options, program, "exit", "0"], env=env, capture_output=True,
                         timeout=TIMEOUT)
    refused = ran.returncode != 0
    assert ran.returncode == (0 if which == "static" else 126), ran.stderr
    for output in ([], ["--tree"], ["--json"]):
        result = nixld_inspect(nixld_script, *output, *options, program, env=env)
        assert (result.returncode, result.stderr) == (ran.returncode, ran.stderr if refused else b"")
        assert program in result.stdout.decode()
    document = json.loads(result.stdout)
    run_error = ran.stderr.decode()[len("nixld: "):-1] if refused else None
    assert (document["run_error"], document["exit_status"]) == (run_error, ran.returncode)
    report = nixld_inspect(nixld_script, *options, program, env=env).stdout.decode()
    assert (f"  nixld run    refuses it (exit status 126): {run_error}\n" in report) == refused
    assert f"warning: {run_error}" not in report


def test_the_inspection_carries_run_s_verdict_with_its_status(tmp_path, inspect_tree):
    absent = tmp_path / "no-such-ld.so"
    inspection = inspect(inspect_tree.root / "plain", NIX_LD=str(absent))
    with pytest.raises(nixld.LoaderError) as raised:
        nixld.plan_launch(inspect_tree.root / "plain", env=environment(NIX_LD=str(absent)))
    assert (inspection.run_error, inspection.run_status) == (raised.value.message, raised.value.exit_status)
    assert inspection.exit_status == 126
    fine = inspect(inspect_tree.root / "plain")
    assert (fine.run_error, fine.run_status, fine.exit_status) == (None, None, 0)


def test_of_two_ld_library_path_entries_the_command_line_searches_the_last_as_the_loader_does(
        nixld_script, uses_library, library_dirs):
    entries = [b"NIX_LD=" + as_bytes(REAL_LOADER), b"NIX_LD_LIBRARY_PATH=" + as_bytes(NO_NIX_LD_LIBRARY_DIR),
               b"LD_LIBRARY_PATH=/nowhere", b"LD_LIBRARY_PATH=" + as_bytes(library_dirs.a)]
    result = run_with_block([nixld_script, "inspect", "--json", uses_library], entries, TIMEOUT)
    assert (result.returncode, result.stderr) == (0, b"")
    document = json.loads(result.stdout)
    assert document["search_path"] == [library_dirs.a, NO_NIX_LD_LIBRARY_DIR]
    [library] = [entry for entry in document["libraries"] if entry["soname"] == "libnixldtest.so"]
    assert (library["path"], library["via"]) == (f"{library_dirs.a}/libnixldtest.so", "library-path")


# ---------------------------------------------------------------------------------------------
# Files that are not programs


@pytest.fixture
def not_programs(tmp_path, inspect_tree) -> dict[str, tuple[Path, type, int, str]]:
    """Every kind of file that is neither a program nor a shared library: name -> (path,
    exception, exit status, what the message says). A file that is not ELF at all is not
    called a corrupt ELF file."""
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    text = tmp_path / "notes.txt"
    text.write_text("not a program\n")
    empty = tmp_path / "empty"
    empty.touch()
    plain = (inspect_tree.root / "plain").read_bytes()
    truncated = tmp_path / "truncated"
    truncated.write_bytes(plain[:40])
    corrupt = tmp_path / "corrupt"
    corrupt.write_bytes(plain[:4] + b"\x07" + plain[5:])  # an ELF class that does not exist
    headers_cut = tmp_path / "headers-cut"
    headers_cut.write_bytes(plain[:64 + 56 + 20])  # ends inside the program headers
    relocatable = tmp_path / "object.o"
    subprocess.run(["gcc", "-c", "-o", relocatable, Path(__file__).parent / "programs/inspect_library.c"],
                   check=True, timeout=TIMEOUT)
    return {
        "missing": (tmp_path / "absent", nixld.ProgramNotFound, 127, "no such file"),
        "under-a-file": (text / "x", nixld.ProgramNotFound, 127, "no such file"),
        "directory": (tmp_path, nixld.NotExecutable, 126, "is a directory"),
        "text": (text, nixld.NotExecutable, 126, "not an ELF file"),
        "script": (script, nixld.NotExecutable, 126, "#! script"),
        "empty": (empty, nixld.NotExecutable, 126, "not an ELF file"),
        "truncated": (truncated, nixld.NotExecutable, 126, ""),
        "corrupt": (corrupt, nixld.NotExecutable, 126, ""),
        "headers-cut": (headers_cut, nixld.NotExecutable, 126, ""),
        "relocatable": (relocatable, nixld.NotExecutable, 126, "relocatable"),
    }


NOT_ELF = ["text", "script", "empty"]
KINDS = ["missing", "under-a-file", "directory", "text", "script", "empty", "truncated", "corrupt",
         "headers-cut", "relocatable"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_file_that_is_not_a_program_or_library_is_refused_with_its_exit_status(not_programs, kind):
    path, error, status, words = not_programs[kind]
    with pytest.raises(error) as raised:
        inspect(path)
    assert raised.value.exit_status == status
    assert str(path) in raised.value.message and words in raised.value.message
    assert "\n" not in raised.value.message
    if kind in NOT_ELF:
        assert "corrupt" not in raised.value.message


@pytest.mark.parametrize("kind", KINDS)
def test_a_file_that_is_not_a_program_or_library_gets_one_line_and_its_exit_status_from_the_cli(nixld_script, not_programs, kind):
    path, _, status, words = not_programs[kind]
    result = nixld_inspect(nixld_script, path)
    assert (result.returncode, result.stdout) == (status, b"")
    assert_one_nixld_line(result.stderr, str(path), words)


class Hang(BaseException):
    """Raised by time_limit; a BaseException, so that no `except Exception` can swallow it."""


@contextmanager
def time_limit(seconds: float):
    def expire(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _regions(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of the parts of a 64-bit little-endian ELF file that a resolver reads:
    the ELF header, the program headers, the dynamic section and the string table it names."""
    phoff, = struct.unpack_from("<Q", data, 32)
    phnum, = struct.unpack_from("<H", data, 56)
    regions = [(0, 64), (phoff, 56 * phnum)]
    loads, dynamic = [], None
    for index in range(phnum):
        p_type, _, offset, vaddr, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", data, phoff + 56 * index)
        if p_type == 1:
            loads.append((offset, vaddr, filesz))
        elif p_type == 2:
            dynamic = (offset, filesz)
    regions.append(dynamic)
    for entry in range(dynamic[1] // 16):
        tag, value = struct.unpack_from("<qQ", data, dynamic[0] + 16 * entry)
        if tag == 5:  # DT_STRTAB: an address, turned into a file offset through the PT_LOADs
            [offset] = [offset + value - vaddr for offset, vaddr, size in loads if vaddr <= value < vaddr + size]
            regions.append((offset, 64))
    return regions


@pytest.fixture(scope="module")
def fuzz_seeds(inspect_tree, tmp_path_factory) -> dict[str, Path]:
    """Small real ELF files to damage: a compiled program, a compiled library, a hand-made one.
    (Paths, not their bytes: hypothesis shows the arguments of a failing example.)"""
    crafted = tmp_path_factory.mktemp("seeds") / "crafted"
    crafted.write_bytes(dynamic_elf_bytes(interpreter=REAL_LOADER.encode(), needed=(b"libc.so.6", b"libm.so.6"),
                                          runpath=b"$ORIGIN:/usr/lib", soname=b"libcrafted.so.1"))
    return {"program": inspect_tree.root / "chain/rpath-program",
            "library": inspect_tree.root / "origin/lib/liborigin.so",
            "crafted": crafted}


@pytest.fixture(scope="module")
def fuzz_directory(tmp_path_factory) -> dict:
    """Where damaged files go: each a new file, kept to the end of the module, so that no two
    share an inode (and so a parse) in the one Inspector they all go through."""
    return {"directory": tmp_path_factory.mktemp("fuzz"), "count": 0, "inspector": Inspector()}


SEEDS = ["program", "library", "crafted"]


@settings(max_examples=300)
@given(seed=st.sampled_from(SEEDS),
       changes=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 1 << 16), st.integers(0, 255)),
                        min_size=1, max_size=6),
       cut=st.none() | st.integers(0, 1 << 16))
def test_a_damaged_elf_file_gives_a_report_or_a_nixld_error_never_a_crash(fuzz_seeds, fuzz_directory, seed,
                                                                          changes, cut):
    """Truncated anywhere, or with bytes changed in its headers, dynamic section and strings,
    a file is inspected (nixld.resolve.Inspection) or refused (nixld.NixLdError), in bounded
    time, and nothing else. Each change is (region, offset in it, new byte), the regions being
    the ELF header, the program headers, the dynamic section, the dynamic strings and the file."""
    original = fuzz_seeds[seed].read_bytes()
    damaged = bytearray(original)
    regions = _regions(original) + [(0, len(damaged))]
    for region, offset, byte in changes:
        start, size = regions[region % len(regions)]
        damaged[min(start + offset % size, len(damaged) - 1)] = byte
    if cut is not None:
        damaged = damaged[:cut % len(damaged)]
    fuzz_directory["count"] += 1
    path = fuzz_directory["directory"] / f"{seed}-{fuzz_directory['count']}"
    path.write_bytes(bytes(damaged))
    path.chmod(0o755)
    with time_limit(10):
        try:
            inspection = fuzz_directory["inspector"].inspect(path, env=environment())
        except nixld.NixLdError as error:
            assert error.exit_status in (126, 127) and "\n" not in error.message
        else:
            assert isinstance(inspection, Inspection)
            json.dumps(inspection.as_json())


# ---------------------------------------------------------------------------------------------
# One parse per file, and what a long-lived process sees change


def test_each_file_is_parsed_once_however_many_programs_need_it(monkeypatch, machine_sample, inspect_tree):
    parsed: dict[tuple[int, int], int] = {}
    parse = nixld.objects._parse_with_pyelftools

    def counting(stream, mode):
        status = os.fstat(stream.fileno())
        parsed[status.st_dev, status.st_ino] = parsed.get((status.st_dev, status.st_ino), 0) + 1
        return parse(stream, mode)

    monkeypatch.setattr(nixld.objects, "_parse_with_pyelftools", counting)
    programs = machine_sample["programs"][:40] + [str(inspect_tree.root / "chain/rpath-program"),
                                                 str(inspect_tree.root / "chain/holder-program")]
    inspector = Inspector()
    inspections = [inspector.inspect(program, env=environment()) for program in programs]
    every_file = {REAL_LOADER, *programs} | {
        entry.path for inspection in inspections for entry in inspection.libraries if entry.path is not None}
    assert {key: count for key, count in parsed.items() if count != 1} == {}
    assert set(parsed) == {(os.stat(path).st_dev, os.stat(path).st_ino) for path in every_file}
    # libc.so.6, needed by every one of them, was parsed once.
    libc = os.stat(library(inspections[0], b"libc.so.6").path)
    assert parsed[libc.st_dev, libc.st_ino] == 1


def test_a_library_rebuilt_between_two_inspections_is_read_again(tmp_path):
    libs = tmp_path / "libs"
    libs.mkdir()
    program = write_dynamic_elf(tmp_path / "tool", interpreter=REAL_LOADER.encode(), needed=(b"libre.so",),
                                runpath=as_bytes(libs))
    write_dynamic_elf(libs / "libre.so", soname=b"libre.so")
    inspector = Inspector()
    assert inspector.inspect(program, env=environment()).missing == ()
    write_dynamic_elf(libs / "libre.so", soname=b"libre.so", needed=(b"libnew.so",))
    assert inspector.inspect(program, env=environment()).missing == (b"libnew.so",)


def test_a_directory_created_between_two_inspections_is_searched(inspect_tree, tmp_path):
    """An Inspector (and nixld.inspect's, which lives as long as the process) must not keep
    believing that a directory does not exist."""
    late = tmp_path / "late"
    inspector = Inspector()
    program = inspect_tree.root / "missing/prog"
    assert inspector.inspect(program, [str(late)], env=environment()).missing == (b"libgone.so",)
    late.mkdir()
    shutil.copy(inspect_tree.root / "missing/gone/libgone.so", late)
    assert found(inspector.inspect(program, [str(late)], env=environment()), b"libgone.so") == (
        as_bytes(late / "libgone.so"), "library-path")


def test_a_relative_library_directory_is_taken_from_the_working_directory_of_each_inspection(
        inspect_tree, monkeypatch):
    inspector = Inspector()
    program = inspect_tree.root / "missing/prog"
    monkeypatch.chdir(inspect_tree.root / "chain")
    assert inspector.inspect(program, ["gone"], env=environment()).missing == (b"libgone.so",)
    monkeypatch.chdir(inspect_tree.root / "missing")
    assert found(inspector.inspect(program, ["gone"], env=environment()), b"libgone.so") == (
        b"gone/libgone.so", "library-path")


# ---------------------------------------------------------------------------------------------
# Agreement with `nixld run`, and reading no more than the loader does


@pytest.mark.parametrize("damage", ["headers of zeros", "headers of 0xff bytes", "cut in half"])
def test_inspect_and_run_agree_that_an_unmappable_program_is_corrupt(nixld_script, inspect_tree, tmp_path, damage):
    plain = inspect_tree.root / "plain"
    if damage == "cut in half":
        damaged = tmp_path / "damaged"
        damaged.write_bytes(plain.read_bytes()[:plain.stat().st_size // 2])
        damaged.chmod(0o755)
    else:
        damaged = Path(overwrite_program_headers(plain, tmp_path / "damaged", 0 if "zeros" in damage else 0xFF))
    inspected = nixld_inspect(nixld_script, damaged)
    ran = subprocess.run([nixld_script, "run", damaged], env={"LANG": "C.UTF-8", **environment()},
                         capture_output=True, timeout=TIMEOUT)
    assert (inspected.returncode, ran.returncode) == (126, 126)
    assert inspected.stderr == ran.stderr
    assert_one_nixld_line(inspected.stderr, str(damaged), "loadable segment")


def test_a_bug_while_parsing_is_not_reported_as_the_users_corrupt_file(inspect_tree, monkeypatch):
    """Only what a parser raises on bad bytes means a corrupt file; an error of nixld's own
    must surface as itself, or the fuzz test below could not tell the two apart."""
    def broken(*args):
        raise TypeError("a bug of nixld's")

    monkeypatch.setattr(nixld.objects, "_dynamic_tags", broken)
    with pytest.raises(TypeError, match="a bug of nixld's"):
        Inspector().inspect(inspect_tree.root / "plain", env=environment())


def _padded(source: Path, target: Path, padding: int, tail: bytes = b"") -> Path:
    """`source` followed by `padding` bytes of zeros (a hole: no disk is used) and `tail`."""
    shutil.copyfile(source, target)
    with open(target, "r+b") as stream:
        stream.seek(padding, os.SEEK_END)
        stream.write(tail)
    target.chmod(0o755)
    return target


def test_proc_self_exe_is_looked_for_only_where_string_constants_are_loaded(probe, inspect_tree, tmp_path):
    """The probe mentions /proc/self/exe in its read-only data; a file that mentions it only
    past its loaded segments (here, after 2 GiB of padding) does not, and its size costs
    nothing: the padding is never read."""
    padded_probe = _padded(Path(probe), tmp_path / "padded-probe", 2 << 30)
    assert warned(inspect(padded_probe), "mentions /proc/self/exe")
    mentions_in_padding = _padded(inspect_tree.root / "plain", tmp_path / "padded-plain", 2 << 30, b"/proc/self/exe")
    assert not warned(inspect(mentions_in_padding), "/proc/self/exe")


def _claiming_the_whole_file(data: bytes, size: int) -> bytearray:
    """A 64-bit dynamic_elf_bytes file whose PT_LOAD, PT_DYNAMIC and DT_STRSZ all run to the
    end of a file of `size` bytes."""
    data = bytearray(data)
    phoff, = struct.unpack_from("<Q", data, 32)
    phnum, = struct.unpack_from("<H", data, 56)
    for at in range(phoff, phoff + 56 * phnum, 56):
        p_type, = struct.unpack_from("<I", data, at)
        offset, = struct.unpack_from("<Q", data, at + 8)
        if p_type in (1, 2):  # PT_LOAD, PT_DYNAMIC
            struct.pack_into("<QQ", data, at + 32, size - offset, size - offset)
            if p_type == 2:
                dynamic = offset
    for at in range(dynamic, len(data), 16):
        if struct.unpack_from("<q", data, at)[0] == 10:  # DT_STRSZ
            struct.pack_into("<Q", data, at + 8, size)
    return data


def test_a_dynamic_section_and_string_table_claiming_the_whole_file_are_read_only_as_far_as_needed(tmp_path, monkeypatch):
    """A PT_DYNAMIC and a DT_STRSZ that span a 2 GiB file: the loader walks the table to
    DT_NULL and reads each string to its NUL, and so does nixld."""
    size = 2 << 30
    program = tmp_path / "claims-all"
    program.write_bytes(_claiming_the_whole_file(
        dynamic_elf_bytes(interpreter=REAL_LOADER.encode(), needed=(b"libc.so.6",)), size))
    os.truncate(program, size)
    program.chmod(0o755)
    read = []
    original = nixld.objects._Reader.read

    def counting(self, offset, length, what):
        read.append(length)
        return original(self, offset, length, what)

    monkeypatch.setattr(nixld.objects._Reader, "read", counting)
    inspection = Inspector().inspect(program, env=environment())
    assert inspection.needed == (b"libc.so.6",)
    assert sum(read) < 64 * 1024


@pytest.fixture(scope="module")
def real_cache() -> bytes:
    """This machine's /etc/ld.so.cache, which the loader reads (a Debian machine has one)."""
    return Path("/etc/ld.so.cache").read_bytes()


def test_a_cache_cut_inside_its_table_of_entries_is_refused_as_glibc_refuses_it(tmp_path, real_cache):
    for size in (len(b"glibc-ld.so.cache1.1"), 40, 100):
        truncated = tmp_path / f"ld.so.cache-{size}"
        truncated.write_bytes(real_cache[:size])
        with pytest.raises(ValueError, match="truncated"):
            nixld.glibc.LdCache.read(os.fsencode(truncated))


def test_a_cache_cut_inside_its_strings_keeps_only_the_entries_glibc_keeps_and_says_so(real_cache):
    whole = nixld.glibc.LdCache._from_bytes(real_cache)
    cut = nixld.glibc.LdCache._from_bytes(real_cache[:len(real_cache) // 2])
    assert whole.damage is None and "truncated" in cut.damage
    kept = [soname for soname in whole._entries if cut.lookup(soname, 64, EM_X86_64, ()) is not None]
    assert 0 < len(kept) < len(whole._entries)
    assert all(cut.lookup(soname, 64, EM_X86_64, ()) == whole.lookup(soname, 64, EM_X86_64, ()) for soname in kept)


@settings(max_examples=300)
@given(cut=st.integers(0, 1 << 20), changes=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)),
                                                     max_size=8))
def test_a_damaged_cache_is_read_or_refused_with_a_value_error_never_a_crash(real_cache, cut, changes):
    data = bytearray(real_cache[:cut % (len(real_cache) + 1)])
    for offset, byte in changes:
        if data:
            data[offset % len(data)] = byte
    with time_limit(10):
        try:
            nixld.glibc.LdCache._from_bytes(bytes(data))
        except ValueError:
            pass


def with_the_cache(cache: Path, nixld_script: str, program, scratch: Path):
    """`nixld inspect --json PROGRAM` and the loader's trace of PROGRAM (with LD_DEBUG=libs), under
    a mount namespace whose /etc/ld.so.cache, the loader's, is `cache`: (the inspection's JSON,
    the (name, path) pairs the loader lists but for itself, loader_tries' answer)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("unshare (util-linux) is required", pytrace=False)
    script = ('mount --bind "$1" /etc/ld.so.cache && "$2" inspect --json "$3" > "$4" '
              f'&& LD_TRACE_LOADED_OBJECTS=1 LD_DEBUG=libs {REAL_LOADER} "$3" > "$5" 2> "$6"')
    outputs = [scratch / name for name in ("inspected", "traced", "debug")]
    result = subprocess.run([unshare, "-rm", "/bin/sh", "-c", script, "sh", cache, nixld_script, program, *outputs],
                            env={"LANG": "C.UTF-8", **environment()}, capture_output=True, timeout=TIMEOUT)
    assert (result.returncode, result.stderr) == (0, b"")
    inspected, traced, debug = (output.read_bytes() for output in outputs)
    listed = parse_trace(subprocess.CompletedProcess([], 0, traced, b""), REAL_LOADER)
    return json.loads(inspected), [entry for entry in listed if entry[0] != THE_LOADER], parse_tries(debug)


def listed_but_the_loader(document: dict) -> list[tuple[bytes, bytes | None]]:
    """(name, path) of every library an inspection's JSON lists, but for the loader itself."""
    return [(library["soname"].encode(), library["path"] and library["path"].encode())
            for library in document["libraries"] if library["via"] != "loader"]


def test_inspect_in_a_world_whose_cache_is_truncated_warns_and_resolves_as_the_loader_does(nixld_script, tmp_path,
                                                                                          real_cache):
    """/etc/ld.so.cache cut short under a mount namespace: glibc ignores it and searches its
    system directories; nixld warns and does the same."""
    truncated = tmp_path / "ld.so.cache"
    truncated.write_bytes(real_cache[:len(real_cache) // 2])
    document, traced, _ = with_the_cache(truncated, nixld_script, "/usr/bin/ls", tmp_path)
    assert any("the loader's cache /etc/ld.so.cache is truncated" in warning for warning in document["warnings"])
    assert listed_but_the_loader(document) == traced
    assert all(library["via"] != "cache" for library in document["libraries"])


# ldconfig's names for the class and machine of a cache entry, as `ldconfig -p` lists them.
LDCONFIG_ABIS = {b"libc6,x86-64": (64, EM_X86_64), b"libc6,x32": (32, EM_X86_64), b"libc6": (32, EM_386)}


def ldconfig_lists(cache: Path, soname: bytes) -> list[tuple[bytes, bytes]]:
    """(flags, path) of every entry for `soname` that `ldconfig -p` lists from `cache`, in its order."""
    ldconfig = shutil.which("ldconfig", path="/sbin:/usr/sbin:" + os.environ.get("PATH", ""))
    listed = subprocess.run([ldconfig, "-p", "-C", cache], capture_output=True, check=True, timeout=TIMEOUT).stdout
    return re.findall(rb"^\t" + re.escape(soname) + rb" \(([^)]*)\) => (.*)$", listed, re.MULTILINE)


def test_a_cache_lookup_takes_the_entry_of_the_programs_class_and_machine_as_ldconfig_lists_them(cache_world):
    """ldconfig lists libcls.so.1 for x32 first, then for x86-64, then for i386: a lookup for
    each takes its own, and one for a machine the cache has no entry of finds nothing."""
    entries = ldconfig_lists(cache_world.cache, b"libcls.so.1")
    assert [flags for flags, _ in entries] == [b"libc6,x32", b"libc6,x86-64", b"libc6"]
    cache = nixld.glibc.LdCache.read(os.fsencode(cache_world.cache))
    for flags, path in entries:
        assert cache.lookup(b"libcls.so.1", *LDCONFIG_ABIS[flags], ()) == path
    assert cache.lookup(b"libcls.so.1", 64, EM_AARCH64, ()) is None


def test_a_cache_lookup_takes_the_best_of_the_glibc_hwcaps_subdirectories_it_is_given(cache_world):
    """The cache holds libhwc.so.1 in hw/ and under each of its glibc-hwcaps subdirectories;
    a lookup is given the subdirectories the loader searches, best first."""
    cache = nixld.glibc.LdCache.read(os.fsencode(cache_world.cache))
    hwcaps = tuple(name.encode() for name in X86_64_HWCAPS)
    for first in range(len(hwcaps) + 1):
        subdir = f"glibc-hwcaps/{X86_64_HWCAPS[first]}" if first < len(hwcaps) else ""
        assert cache.lookup(b"libhwc.so.1", 64, EM_X86_64, hwcaps[first:]) == as_bytes(
            cache_world.hw / subdir / "libhwc.so.1")


def test_a_program_resolves_through_an_ldconfig_cache_as_the_loader_resolves_it(nixld_script, cache_world, tmp_path):
    """With cache_world's cache as the loader's, the loader takes libcls.so.1's x86-64 entry, not
    the x32 one listed before it, and libhwc.so.1's entry in the best glibc-hwcaps subdirectory
    it searches; nixld takes the same, from the cache."""
    document, traced, tries = with_the_cache(cache_world.cache, nixld_script, cache_world.program, tmp_path)
    assert listed_but_the_loader(document) == traced
    expected = {b"libcls.so.1": as_bytes(cache_world.root / "lib64/libcls.so.1"),
                b"libhwc.so.1": as_bytes(_best_hwcaps_copy(cache_world))}
    for soname, path in expected.items():
        [library] = [library for library in document["libraries"] if library["soname"].encode() == soname]
        assert (library["via"], library["path"].encode()) == ("cache", path) == tries[soname][-1]
