"""`nixld doctor [PROGRAM]`: each fault planted here is named, with the setting that fixes it,
and makes the exit status 1; a setup where a launch would work exits 0.

The command runs in a child process with an explicit environment (the CLI reads its caller's
from /proc/self/environ); what is at the well-known interpreter paths is tested against files
in a temporary directory through `diagnose`'s table, and for real in a user and mount namespace
where /lib64 holds nixld's shim, or nothing, as on NixOS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
from conftest import FOREIGN, FOREIGN_INTERPRETER, PROGRAMS, compile_all, require, why_gcc_cannot_build_32_bit
from crafted import EM_386, EM_AARCH64, ET_EXEC, write_dynamic_elf, write_elf, write_loader
from environments import run_with_block

import nixld
from nixld import doctor

REAL_LOADER = "/lib64/ld-linux-x86-64.so.2"
MUSL_LOADER = "/lib/ld-musl-x86_64.so.1"
I386_LOADER = "/lib/ld-linux.so.2"
FOREIGN_I386_INTERPRETER = "/nix/store/00000000000000000000000000000000-glibc-2.36/lib/ld-linux.so.2"
FOREIGN_MUSL_INTERPRETER = "/nix/store/00000000000000000000000000000000-musl-1.2.3/lib/ld-musl-x86_64.so.1"
NIXLD = Path(sys.executable).with_name("nixld")
TIMEOUT = 60
# Opening a FIFO for reading waits for a writer: a report that opens the loader so never ends.
AT_ONCE = 10

Report = namedtuple("Report", "status document stderr")


def environment(**variables: str | None) -> dict:
    """PATH, a UTF-8 locale and the host's loader as NIX_LD, then `variables` (None unsets)."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "NIX_LD": REAL_LOADER}
    for name, value in variables.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def doctor_text(*args, timeout=TIMEOUT, cwd=None, **variables) -> subprocess.CompletedProcess:
    """`nixld doctor ARGS` in the environment(**variables) (and in `cwd`); its output as text."""
    return subprocess.run([str(NIXLD), "doctor", *map(str, args)], env=environment(**variables),
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def doctor_json(*args, timeout=TIMEOUT, cwd=None, **variables) -> Report:
    result = doctor_text("--json", *args, timeout=timeout, cwd=cwd, **variables)
    return Report(result.returncode, json.loads(result.stdout), result.stderr)


def problems(document: dict) -> list[dict]:
    return [finding for finding in document["findings"] if finding["severity"] == "problem"]


def warnings(document: dict) -> list[dict]:
    return [finding for finding in document["findings"] if finding["severity"] == "warning"]


def the_problem(report: Report, *words: str) -> dict:
    """The one problem of `report`, which must say each of `words`; the exit status is 1."""
    assert report.status == 1, report
    found = problems(report.document)
    assert len(found) == 1, found
    for word in words:
        assert word in found[0]["message"], (word, found[0])
    return found[0]


def finding_line(output: str, finding: dict) -> str:
    """The line of the text report that holds `finding`: its message and its fix, together."""
    line = f"  {finding['severity']}: {finding['message']}" + (f"; fix: {finding['fix']}" if finding["fix"] else "")
    assert line in output.splitlines(), (line, output)
    return line


def loader_entry(document: dict, system: str = "x86_64_linux") -> dict:
    return next(entry for entry in document["loaders"] if entry["system"] == system)


# ---------------------------------------------------------------------------------------------
# Programs


Programs = namedtuple("Programs", "quiet empty_runpath empty_rpath relative_runpath through_shim")


@pytest.fixture(scope="module")
def programs(tmp_path_factory, library_dirs) -> Programs:
    """Foreign programs that need libnixldtest.so (from library_dirs.a) and do nothing else:
    `quiet` (no path of its own), `empty_runpath` (RUNPATH /a::/b, as clang-format's wheel
    ships), `empty_rpath` (RPATH ':'), `relative_runpath` (RUNPATH /a:lib); `through_shim`, the
    probe with nixld's shim as its interpreter."""
    root = tmp_path_factory.mktemp("doctor")
    base = [str(PROGRAMS / "inspect_program.c"), "-Wl,--no-as-needed", f"-L{library_dirs.a}", "-lnixldtest"]
    compile_all([
        ["-o", str(root / "quiet"), *base, FOREIGN],
        ["-o", str(root / "empty-runpath"), *base, FOREIGN, "-Wl,--enable-new-dtags", "-Wl,-rpath,/a::/b"],
        ["-o", str(root / "empty-rpath"), *base, FOREIGN, "-Wl,--disable-new-dtags", "-Wl,-rpath,:"],
        ["-o", str(root / "relative-runpath"), *base, FOREIGN, "-Wl,--enable-new-dtags", "-Wl,-rpath,/a:lib"],
        ["-o", str(root / "through-shim"), str(PROGRAMS / "probe.c"), f"-Wl,--dynamic-linker={nixld.shim_path()}"],
    ])
    return Programs(*(str(root / name) for name in ("quiet", "empty-runpath", "empty-rpath", "relative-runpath",
                                                    "through-shim")))


@pytest.fixture(scope="module")
def program32(tmp_path_factory) -> str:
    """A 32-bit program whose interpreter is a Nix store path no machine has, as a NixOS build
    would name it; needs gcc-multilib."""
    why = why_gcc_cannot_build_32_bit()
    require(why is None, f"gcc cannot build 32-bit programs ({why})", package="gcc-multilib")
    root = tmp_path_factory.mktemp("doctor32")
    compile_all([["-m32", "-o", str(root / "prog32"), str(PROGRAMS / "inspect_program.c"),
                  f"-Wl,--dynamic-linker={FOREIGN_I386_INTERPRETER}"]])
    return str(root / "prog32")


@pytest.fixture(scope="module")
def musl_program(tmp_path_factory) -> str:
    """A foreign musl program; needs musl-gcc and musl's loader."""
    musl_gcc = shutil.which("musl-gcc")
    require(musl_gcc is not None and os.path.exists(MUSL_LOADER), f"musl-gcc and musl's loader {MUSL_LOADER}",
            package="musl-tools")
    root = tmp_path_factory.mktemp("doctor-musl")
    compile_all([["-o", str(root / "musl-prog"), str(PROGRAMS / "inspect_program.c"),
                  f"-Wl,--dynamic-linker={FOREIGN_MUSL_INTERPRETER}"]], compiler=[musl_gcc])
    return str(root / "musl-prog")


def require_musl_loader():
    require(os.path.exists(MUSL_LOADER), f"musl's loader {MUSL_LOADER}", package="musl-tools")


# ---------------------------------------------------------------------------------------------
# A setup that works


def test_a_working_setup_exits_0_with_each_section_and_no_problem(library_dirs):
    result = doctor_text(NIX_LD_LIBRARY_PATH=library_dirs.a)
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    for section in ("Loader", "Library directories", "Interpreter paths", "Findings"):
        assert section in lines
    assert "Program" not in lines
    assert "  x86_64_linux: /lib64/ld-linux-x86-64.so.2 -> " + os.path.realpath(REAL_LOADER) in lines
    assert "    chosen by NIX_LD (NIX_LD_x86_64_linux unset)" in lines
    assert "    launch options: --library-path --argv0" in lines
    assert f"    {library_dirs.a}: 1 x86_64 shared object" in lines
    assert lines[-1].startswith("0 problems") and lines[-1].endswith(": a launch would work")


def test_the_report_names_the_loaders_c_library_and_its_version(library_dirs):
    report = doctor_json(NIX_LD_LIBRARY_PATH=library_dirs.a)
    entry = loader_entry(report.document)
    assert (entry["kind"], entry["libc"], entry["machine"], entry["usable"]) == ("loader", "glibc", "x86_64", True)
    assert entry["libc_version"] == os.confstr("CS_GNU_LIBC_VERSION").split()[-1]
    assert entry["options"] == ["--library-path", "--argv0"]


def test_a_musl_loader_is_named_musl_with_its_version_when_it_holds_one():
    require_musl_loader()
    report = doctor_json(NIX_LD=MUSL_LOADER)
    entry = loader_entry(report.document)
    assert (entry["kind"], entry["libc"]) == ("loader", "musl")
    version = subprocess.run([MUSL_LOADER], capture_output=True, text=True).stderr.split("Version ")[1].split()[0]
    assert entry["libc_version"] == version


def test_a_healthy_foreign_program_exits_0(programs, library_dirs):
    report = doctor_json(programs.quiet, NIX_LD_LIBRARY_PATH=library_dirs.a)
    assert (report.status, report.stderr, report.document["ok"]) == (0, "", True)
    program = report.document["program"]
    assert (program["path"], program["libc"], program["missing"]) == (programs.quiet, "glibc", [])
    assert program["interpreter"]["kind"] == "missing"
    assert program["inspect"]["loader"]["path"] == REAL_LOADER
    assert problems(report.document) == []


def test_a_program_with_nixlds_shim_as_its_interpreter_has_nothing_to_fear_from_proc_self_exe(programs):
    report = doctor_json(programs.through_shim)
    assert (report.status, problems(report.document)) == (0, [])
    program = report.document["program"]
    assert program["mentions_proc_self_exe"] and "execv" in program["starts_programs"]
    assert (program["interpreter"]["kind"], program["interpreter"]["shim"]) == ("nixld-shim", "installed")


def test_a_static_program_needs_no_loader(static_probe):
    report = doctor_json(static_probe, NIX_LD="/nonexistent/ld.so")
    assert (report.status, report.document["program"]["static"]) == (0, True)
    assert [finding["topic"] for finding in warnings(report.document)] == ["loader"]


def test_a_static_program_of_another_machine_is_the_problem_nixld_run_refuses_it_for(tmp_path, nixld_script):
    """One verdict: what `nixld run` refuses (as `nixld inspect` does), doctor calls a problem."""
    program = write_elf(tmp_path / "arm-static", machine=EM_AARCH64, interpreter=None, dynamic=False,
                        elf_type=ET_EXEC)
    refused = subprocess.run([nixld_script, "run", program], env=environment(), capture_output=True, timeout=TIMEOUT)
    assert refused.returncode == 126
    problem = the_problem(doctor_json(os.fsdecode(program)), refused.stderr.decode()[len("nixld: "):-1])
    assert problem["fix"].startswith("set NIX_LD_aarch64_linux to the path of an aarch64 loader")


# ---------------------------------------------------------------------------------------------
# The loader


def test_nix_ld_naming_a_missing_file_is_a_problem_whose_fix_is_to_set_nix_ld(library_dirs):
    report = doctor_json(NIX_LD="/nonexistent/ld.so", NIX_LD_LIBRARY_PATH=library_dirs.a)
    problem = the_problem(report, "loader /nonexistent/ld.so (from NIX_LD) does not exist")
    assert problem["fix"] == "set NIX_LD to the path of an x86_64 loader (glibc's ld.so)"
    assert loader_entry(report.document)["kind"] == "missing"
    text = doctor_text(NIX_LD="/nonexistent/ld.so", NIX_LD_LIBRARY_PATH=library_dirs.a)
    assert text.returncode == 1
    finding_line(text.stdout, problem)
    assert text.stdout.splitlines()[-1].startswith("1 problem, ")


def test_no_loader_at_all_says_foreign_programs_cannot_start_and_what_to_set(library_dirs):
    report = doctor_json(NIX_LD=None, NIX_LD_LIBRARY_PATH=library_dirs.a)
    problem = the_problem(report, "(nix-ld's default) does not exist", "foreign ones cannot")
    assert problem["fix"].startswith("set NIX_LD (or NIX_LD_x86_64_linux) to the path of an x86_64 loader")
    assert "programs.nix-ld.enable = true" in problem["fix"]


@pytest.mark.parametrize("what", ["text file", "static program", "shared library"])
def test_nix_ld_naming_a_file_that_is_not_a_loader_is_a_problem(what, tmp_path, static_probe, library_dirs):
    path = {"static program": static_probe, "shared library": f"{library_dirs.a}/libnixldtest.so"}.get(what)
    if path is None:
        path = tmp_path / "ld.so"
        path.write_text("not a loader\n")
        path.chmod(0o755)
    report = doctor_json(NIX_LD=path, NIX_LD_LIBRARY_PATH=library_dirs.a)
    problem = the_problem(report, f"loader {path} (from NIX_LD) is not an ELF")
    assert problem["fix"] == "set NIX_LD to the path of an x86_64 loader (glibc's ld.so)"


@pytest.mark.parametrize("kind", ["a FIFO", "a directory"])
def test_nix_ld_naming_what_is_not_a_regular_file_is_a_problem_found_at_once(kind, tmp_path, uses_library,
                                                                            library_dirs):
    """Opening a FIFO for reading waits for a writer; the kernel refuses such an interpreter
    at once, and so does `nixld doctor`, with or without a PROGRAM, in the words of `nixld run`."""
    loader = tmp_path / "ld.so"
    os.mkfifo(loader) if kind == "a FIFO" else loader.mkdir()
    for program in ([], [uses_library]):
        report = doctor_json(*program, NIX_LD=loader, NIX_LD_LIBRARY_PATH=library_dirs.a, timeout=AT_ONCE)
        problem = the_problem(report)
        assert (problem["message"], problem["fix"]) == (f"loader {loader} (from NIX_LD) is not a regular file",
                                                        "set NIX_LD to the path of an x86_64 loader (glibc's ld.so)")
        assert (loader_entry(report.document)["kind"], report.stderr) == ("other", "")


def test_nix_ld_naming_nixlds_own_shim_is_a_problem(library_dirs):
    report = doctor_json(NIX_LD=nixld.shim_path(), NIX_LD_LIBRARY_PATH=library_dirs.a)
    problem = the_problem(report, "is nixld's shim, not a loader")
    assert problem["fix"].startswith("set NIX_LD to the path of an x86_64 loader")
    assert loader_entry(report.document)["kind"] == "nixld-shim"


def test_the_system_specific_variable_wins_over_nix_ld_and_the_report_says_so(library_dirs):
    report = doctor_json(NIX_LD="/nonexistent/ld.so", NIX_LD_x86_64_linux=REAL_LOADER,
                         NIX_LD_LIBRARY_PATH=library_dirs.a)
    entry = loader_entry(report.document)
    assert (report.status, entry["path"], entry["source"], entry["overrides"]) == (
        0, REAL_LOADER, "NIX_LD_x86_64_linux", ["NIX_LD"])
    text = doctor_text(NIX_LD="/nonexistent/ld.so", NIX_LD_x86_64_linux=REAL_LOADER,
                       NIX_LD_LIBRARY_PATH=library_dirs.a)
    assert "    chosen by NIX_LD_x86_64_linux, which wins over NIX_LD" in text.stdout.splitlines()


def test_a_broken_system_specific_variable_is_the_one_the_fix_names(library_dirs):
    report = doctor_json(NIX_LD_x86_64_linux="/nonexistent/ld.so", NIX_LD_LIBRARY_PATH=library_dirs.a)
    problem = the_problem(report, "(from NIX_LD_x86_64_linux) does not exist")
    assert problem["fix"] == "set NIX_LD_x86_64_linux to the path of an x86_64 loader (glibc's ld.so)"


def test_a_loader_without_library_path_option_is_warned_of(tmp_path, library_dirs):
    loader = write_loader(tmp_path / "ld.so", options=())
    report = doctor_json(NIX_LD=os.fsdecode(loader), NIX_LD_LIBRARY_PATH=library_dirs.a)
    assert report.status == 0
    assert any("has no --library-path option" in finding["message"] for finding in warnings(report.document))


def test_a_misspelt_system_variable_is_named_with_its_right_spelling(library_dirs):
    report = doctor_json(NIX_LD_LIBRARY_PATH=library_dirs.a, **{"NIX_LD_x86-64-linux": REAL_LOADER})
    (finding,) = [finding for finding in warnings(report.document) if finding["topic"] == "environment"]
    assert "NIX_LD_x86-64-linux is not a variable nixld reads" in finding["message"]
    assert finding["fix"] == "rename it NIX_LD_x86_64_linux"


def test_nix_ld_1_x_spellings_are_read_and_named_as_spelt(library_dirs):
    """NIX_LD_x86_64-linux, as environments set for nix-ld 1.x carry it, is no misspelling."""
    report = doctor_json(NIX_LD="/nonexistent/ld.so", NIX_LD_LIBRARY_PATH=library_dirs.a,
                         **{"NIX_LD_x86_64-linux": REAL_LOADER, "NIX_LD_aarch64-linux": REAL_LOADER})
    entry = loader_entry(report.document)
    assert (entry["path"], entry["source"], entry["overrides"]) == (REAL_LOADER, "NIX_LD_x86_64-linux", ["NIX_LD"])
    assert loader_entry(report.document, "aarch64_linux")["source"] == "NIX_LD_aarch64-linux"
    assert [finding for finding in report.document["findings"] if finding["topic"] == "environment"] == []


def test_a_32_bit_program_without_its_own_loader_variable_is_told_to_set_nix_ld_i686_linux(program32):
    report = doctor_json(program32)
    problem = the_problem(report, f"{program32} is a 32-bit i386 program and NIX_LD_i686_linux is unset",
                          "is for x86_64 programs, not i386 ones")
    assert problem["fix"] == "set NIX_LD_i686_linux to the path of an i386 loader (glibc's ld.so)"
    entry = loader_entry(report.document, "i686_linux")
    assert (entry["source"], entry["kind"], entry["fix"]) == ("NIX_LD", "other-machine", problem["fix"])
    finding_line(doctor_text(program32).stdout, problem)


def test_a_32_bit_program_with_nix_ld_i686_linux_set_would_start(program32):
    require(os.path.exists(I386_LOADER), f"the i386 loader {I386_LOADER}", package="libc6-i386")
    report = doctor_json(program32, NIX_LD_i686_linux=I386_LOADER)
    assert (report.status, problems(report.document)) == (0, [])
    assert loader_entry(report.document, "i686_linux")["source"] == "NIX_LD_i686_linux"


def test_another_machines_program_needs_its_loader_and_an_emulator(tmp_path):
    program = write_dynamic_elf(tmp_path / "arm-tool", machine=EM_AARCH64, elf_type=ET_EXEC,
                                interpreter=b"/lib/ld-linux-aarch64.so.1", needed=(b"libc.so.6",))
    report = doctor_json(os.fsdecode(program))
    assert report.status == 1
    (problem,) = [p for p in problems(report.document) if p["topic"] == "loader"]
    assert "is a 64-bit aarch64 program and NIX_LD_aarch64_linux is unset" in problem["message"]
    assert problem["fix"] == ("set NIX_LD_aarch64_linux to the path of an aarch64 loader (glibc's ld.so) "
                              "and an emulator (binfmt_misc) for it")


# ---------------------------------------------------------------------------------------------
# Library directories


def test_a_library_directory_that_does_not_exist_is_a_problem_naming_its_variable(library_dirs):
    report = doctor_json(NIX_LD_LIBRARY_PATH=f"{library_dirs.a}:/nonexistent/lib")
    problem = the_problem(report, "library directory /nonexistent/lib (from NIX_LD_LIBRARY_PATH) does not exist")
    assert problem["fix"].startswith("remove it from NIX_LD_LIBRARY_PATH")
    directories = report.document["library_dirs"][0]["directories"]
    assert [(d["path"], d["exists"]) for d in directories] == [(library_dirs.a, True), ("/nonexistent/lib", False)]
    finding_line(doctor_text(NIX_LD_LIBRARY_PATH=f"{library_dirs.a}:/nonexistent/lib").stdout, problem)


def test_a_library_directory_with_no_shared_object_is_a_problem(library_dirs):
    report = doctor_json(NIX_LD_LIBRARY_PATH=library_dirs.empty)
    the_problem(report, f"library directory {library_dirs.empty} (from NIX_LD_LIBRARY_PATH) holds no x86_64 "
                        "shared object")


def test_a_library_directory_that_is_a_file_is_a_problem(library_dirs):
    library = f"{library_dirs.a}/libnixldtest.so"
    report = doctor_json(NIX_LD_LIBRARY_PATH=library)
    problem = the_problem(report, f"library directory {library} (from NIX_LD_LIBRARY_PATH) is not a directory")
    assert problem["fix"].startswith("remove it from NIX_LD_LIBRARY_PATH")


def test_a_fifo_named_like_a_library_is_passed_over_at_once(tmp_path, library_dirs):
    os.mkfifo(tmp_path / "libfifo.so")
    shutil.copy(f"{library_dirs.a}/libnixldtest.so", tmp_path)
    report = doctor_json(NIX_LD_LIBRARY_PATH=tmp_path, timeout=AT_ONCE)
    [directory] = report.document["library_dirs"][0]["directories"]
    assert (report.status, directory["shared_objects"], directory["other_machines"]) == (0, 1, 0)


def test_a_library_directory_of_another_machines_libraries_is_a_problem(tmp_path):
    write_dynamic_elf(tmp_path / "libthirty.so.1", elf_class=32, machine=EM_386, soname=b"libthirty.so.1")
    report = doctor_json(NIX_LD_LIBRARY_PATH_x86_64_linux=tmp_path)
    the_problem(report, "(from NIX_LD_LIBRARY_PATH_x86_64_linux) holds no x86_64 shared object (only 1 of "
                        "other machines)")


@pytest.mark.parametrize("relative", ["lib-a", "./lib-a", "../lib-a"])
def test_a_relative_library_directory_is_warned_of_however_it_is_spelt(library_dirs, relative):
    """A relative directory is searched from wherever the program starts: from here it holds
    the libraries, from elsewhere it may hold none, or someone else's."""
    here = Path(library_dirs.empty) if relative.startswith("..") else Path(library_dirs.a).parent
    report = doctor_json(NIX_LD_LIBRARY_PATH=relative, cwd=here)
    [directory] = report.document["library_dirs"][0]["directories"]
    assert (report.status, directory["relative"], directory["shared_objects"]) == (0, True, 1)
    [warning] = [finding for finding in warnings(report.document) if finding["topic"] == "library-dirs"]
    assert warning["message"] == (f"library directory {relative} (from NIX_LD_LIBRARY_PATH) is relative: it is "
                                  "searched from whatever directory the program starts in")
    assert warning["fix"] == "write it as an absolute path in NIX_LD_LIBRARY_PATH"
    finding_line(doctor_text(NIX_LD_LIBRARY_PATH=relative, cwd=here).stdout, warning)


def test_an_absolute_library_directory_gets_no_such_warning(library_dirs):
    report = doctor_json(NIX_LD_LIBRARY_PATH=library_dirs.a)
    assert report.document["library_dirs"][0]["directories"][0]["relative"] is False
    assert not [finding for finding in report.document["findings"] if "relative" in finding["message"]]


def test_with_a_program_a_bad_library_directory_is_only_a_warning_when_its_libraries_resolve(programs, library_dirs):
    report = doctor_json(programs.quiet, NIX_LD_LIBRARY_PATH=f"{library_dirs.a}:/nonexistent/lib")
    assert (report.status, problems(report.document)) == (0, [])
    assert any("/nonexistent/lib" in finding["message"] for finding in warnings(report.document))


# ---------------------------------------------------------------------------------------------
# The program


def test_of_two_ld_library_path_entries_the_last_is_reported_and_searched_as_the_loader_does(uses_library,
                                                                                            library_dirs):
    entries = [b"PATH=/usr/bin:/bin", b"LANG=C.UTF-8", b"NIX_LD=" + REAL_LOADER.encode(),
               b"LD_LIBRARY_PATH=/nowhere", b"LD_LIBRARY_PATH=" + os.fsencode(library_dirs.a)]
    result = run_with_block([NIXLD, "doctor", "--json", uses_library], entries, TIMEOUT)
    document = json.loads(result.stdout)
    assert document["environment"]["LD_LIBRARY_PATH"] == library_dirs.a
    assert (document["program"]["missing"], problems(document)) == ([], [])


def test_a_missing_library_is_a_problem_whose_fix_is_nixld_find_libs(programs, library_dirs):
    report = doctor_json(programs.quiet, NIX_LD_LIBRARY_PATH=library_dirs.empty)
    problem = the_problem(report, "1 library is not found: libnixldtest.so")
    assert problem["fix"].startswith(f"run `nixld find-libs {programs.quiet}`")
    assert "NIX_LD_LIBRARY_PATH" in problem["fix"]
    assert report.document["program"]["missing"] == [{"soname": "libnixldtest.so", "needed_by": [programs.quiet]}]
    text = doctor_text(programs.quiet, NIX_LD_LIBRARY_PATH=library_dirs.empty)
    assert "  libraries: 2 of 3 found; missing: libnixldtest.so" in text.stdout.splitlines()
    finding_line(text.stdout, problem)


@pytest.mark.parametrize("which, tag, value, entries, fix", [
    ("empty_runpath", "RUNPATH", "/a::/b", "an empty entry", "remove it: patchelf --set-rpath /a:/b"),
    ("empty_rpath", "RPATH", ":", "2 empty entries", "remove them: patchelf --remove-rpath"),
    ("relative_runpath", "RUNPATH", "/a:lib", "the relative entry 'lib'", "remove it: patchelf --set-rpath /a"),
])
def test_a_search_path_with_an_empty_or_relative_entry_is_a_problem(programs, library_dirs, which, tag, value,
                                                                     entries, fix):
    program = getattr(programs, which)
    report = doctor_json(program, NIX_LD_LIBRARY_PATH=library_dirs.a)
    problem = the_problem(report, f"{program} has the {tag} {value!r}, with {entries}, which glibc searches "
                                  "relative to the current directory")
    assert problem["fix"] == f"{fix} {program}"
    finding_line(doctor_text(program, NIX_LD_LIBRARY_PATH=library_dirs.a).stdout, problem)


def test_a_glibc_program_given_musls_loader_is_told_to_set_nix_ld_to_glibcs(programs, library_dirs):
    require_musl_loader()
    report = doctor_json(programs.quiet, NIX_LD=MUSL_LOADER, NIX_LD_LIBRARY_PATH=library_dirs.a)
    assert report.document["program"]["libc"] == "glibc"
    assert report.status == 1
    (problem,) = [p for p in problems(report.document) if "C library" in p["message"] or "musl's" in p["message"]]
    assert problem["message"] == (f"{programs.quiet} is a glibc program but its loader {MUSL_LOADER} "
                                  "(from NIX_LD) is musl's")
    assert problem["fix"] == "set NIX_LD to the path of an x86_64 loader (glibc's ld.so)"


def test_a_musl_program_given_glibcs_loader_is_told_to_use_musls(musl_program):
    report = doctor_json(musl_program)
    assert report.document["program"]["libc"] == "musl"
    (problem,) = [p for p in problems(report.document) if "musl program" in p["message"]]
    assert problem["message"] == (f"{musl_program} is a musl program but its loader {REAL_LOADER} (from NIX_LD) "
                                  "is glibc's")
    assert problem["fix"].startswith(f"start it with musl's loader: `nixld run --ld {MUSL_LOADER} {musl_program}`")


def test_a_program_mentioning_proc_self_exe_without_a_shim_at_its_interpreter_is_a_problem(probe):
    report = doctor_json(probe)
    problem = the_problem(report, f"{probe} mentions /proc/self/exe", f"{FOREIGN_INTERPRETER} does not exist",
                          "its /proc/self/exe is the loader", "a wrapper written in another directory")
    assert problem["fix"].startswith(f"wrap it where it is, `nixld wrap --in-place --format binary {probe}`")
    assert 'patchelf --set-interpreter "$(nixld shim --path)"' in problem["fix"]
    finding_line(doctor_text(probe).stdout, problem)


def test_at_a_well_known_interpreter_path_the_fix_is_to_put_the_shim_there(probe):
    table = {"x86_64_linux": ((os.fsencode(FOREIGN_INTERPRETER), "glibc"),)}
    report = doctor.diagnose({b"NIX_LD": REAL_LOADER.encode()}, os.fsencode(probe), interpreter_paths=table)
    (proc_self_exe,) = [p for p in problems(report) if "/proc/self/exe" in p["message"]]
    assert proc_self_exe["fix"].startswith(f"put nixld's shim at {FOREIGN_INTERPRETER}: on NixOS set "
                                           "environment.ldso to a copy of `nixld shim --path --system x86_64_linux`")
    (children,) = [w for w in warnings(report) if "starts other programs" in w["message"]]
    assert "execv" in children["message"]
    assert proc_self_exe["fix"] == f"{children['fix']}; or wrap it where it is: nixld wrap --in-place --format binary {probe}"


# ---------------------------------------------------------------------------------------------
# Interpreter paths


@pytest.fixture
def interpreter_files(tmp_path):
    """One file of each kind that can be at an interpreter path, by kind."""
    files = {"missing": tmp_path / "missing"}
    files["loader"] = tmp_path / "loader"
    shutil.copy(REAL_LOADER, files["loader"])
    files["nixld-shim"] = tmp_path / "shim"
    shutil.copy(nixld.shim_path(), files["nixld-shim"])
    files["nixld-shim, another build"] = tmp_path / "other-shim"
    files["nixld-shim, another build"].write_bytes(Path(nixld.shim_path()).read_bytes() + b"\0another build")
    files["nix-ld-shim"] = Path(os.fsdecode(write_elf(tmp_path / "nix-ld", elf_type=ET_EXEC, interpreter=None,
                                                      payload=b"\0NIX_LD\0NIX_LD_LIBRARY_PATH\0")))
    files["stub-ld"] = Path(os.fsdecode(write_elf(tmp_path / "stub-ld", elf_type=ET_EXEC, interpreter=None,
                                                  payload=b"\0https://nix.dev/permalink/stub-ld\0")))
    files["other"] = tmp_path / "other"
    files["other"].write_text("#!/bin/sh\n")
    files["other-machine"] = Path(os.fsdecode(write_loader(tmp_path / "arm-loader", machine=EM_AARCH64)))
    return files


def test_each_kind_of_file_at_an_interpreter_path_is_told_apart(interpreter_files):
    table = {"x86_64_linux": tuple((os.fsencode(path), "glibc") for path in interpreter_files.values())}
    report = doctor.diagnose({b"NIX_LD": REAL_LOADER.encode()}, interpreter_paths=table)
    found = {entry["path"]: entry for entry in report["interpreter_paths"]}
    kinds = {name: found[str(path)]["kind"] for name, path in interpreter_files.items()}
    assert kinds == {name: name.split(",")[0] for name in interpreter_files}
    assert found[str(interpreter_files["nixld-shim"])]["shim"] == "installed"
    assert found[str(interpreter_files["nixld-shim, another build"])]["shim"] == "other build"
    loader = found[str(interpreter_files["loader"])]
    assert (loader["libc"], loader["libc_version"]) == ("glibc", os.confstr("CS_GNU_LIBC_VERSION").split()[-1])


def test_a_missing_interpreter_path_is_a_warning_saying_what_the_shim_would_fix(interpreter_files):
    missing = str(interpreter_files["missing"])
    table = {"x86_64_linux": ((os.fsencode(missing), "glibc"),)}
    report = doctor.diagnose({b"NIX_LD": REAL_LOADER.encode()}, interpreter_paths=table)
    (finding,) = [w for w in warnings(report) if w["topic"] == "interpreter-paths"]
    assert finding["message"] == (f"{missing} does not exist: x86_64_linux programs that name it start only through "
                                  "`nixld run`, where /proc/self/exe is the loader, and cannot start each other")
    assert finding["fix"].startswith(f"put nixld's shim at {missing}: on NixOS set environment.ldso")
    assert report["ok"]


@pytest.mark.parametrize("kind", ["other", "other-machine"])
def test_a_file_at_an_interpreter_path_that_can_start_nothing_is_a_problem(interpreter_files, kind):
    path = str(interpreter_files[kind])
    table = {"x86_64_linux": ((os.fsencode(path), "glibc"),)}
    report = doctor.diagnose({b"NIX_LD": REAL_LOADER.encode()}, interpreter_paths=table)
    (problem,) = problems(report)
    assert problem["message"].startswith(f"{path} is ") and "every program that names it fails" in problem["message"]
    assert problem["fix"].startswith(f"remove it, or put nixld's shim at {path}")


def test_this_machines_interpreter_paths_are_its_real_loaders():
    report = doctor_json()
    found = {entry["path"]: entry for entry in report.document["interpreter_paths"]}
    assert (found[REAL_LOADER]["kind"], found[REAL_LOADER]["libc"]) == ("loader", "glibc")
    assert found[REAL_LOADER]["this_machine"] and not found["/lib/ld-linux-aarch64.so.1"]["this_machine"]


@pytest.mark.nixos_world
@pytest.mark.parametrize("shim_in_lib64", [False, True], ids=["lib64-empty", "shim-in-lib64"])
def test_in_a_nixos_like_world_doctor_sees_what_is_at_lib64(tmp_path, nixld_script, native_probe, shim_in_lib64):
    """Inside `unshare -rm`, /lib64 is a directory of ours: empty, as on NixOS, or holding
    nixld's shim. The probe names /lib64/ld-linux-x86-64.so.2 and mentions /proc/self/exe."""
    from test_nixos_world import World

    world = World(tmp_path, nixld_script)
    if shim_in_lib64:
        shutil.copy(nixld.shim_path(), world.lib64 / "ld-linux-x86-64.so.2")
    (setup, program) = world.run(
        {"argv": world.python(nixld_script, "doctor", "--json"), "env": world.environment()},
        {"argv": world.python(nixld_script, "doctor", "--json", native_probe), "env": world.environment()},
    )
    setup_report, program_report = json.loads(setup.stdout), json.loads(program.stdout)
    (lib64,) = [entry for entry in setup_report["interpreter_paths"] if entry["path"] == REAL_LOADER]
    proc_self_exe = [p for p in problems(program_report) if "/proc/self/exe" in p["message"]]
    if shim_in_lib64:
        assert (lib64["kind"], lib64["shim"]) == ("nixld-shim", "installed")
        assert (program.returncode, proc_self_exe) == (0, [])
    else:
        assert lib64["kind"] == "missing"
        assert any(w["message"].startswith(f"{REAL_LOADER} does not exist") for w in warnings(setup_report))
        assert program.returncode == 1
        assert proc_self_exe[0]["fix"].startswith(f"put nixld's shim at {REAL_LOADER}")
        assert proc_self_exe[0]["fix"].endswith(f"or wrap it where it is: nixld wrap --in-place --format binary "
                                                f"{native_probe}")
    assert setup.returncode == 0, setup.stdout  # the loader copy works; the rest is advice


# ---------------------------------------------------------------------------------------------
# The command line


def test_a_program_that_does_not_exist_is_one_line_and_127():
    result = doctor_text("/nonexistent/tool")
    assert (result.returncode, result.stdout) == (127, "")
    assert result.stderr == "nixld: /nonexistent/tool: no such file\n"


def test_a_file_that_is_not_elf_is_one_line_and_126(tmp_path):
    script = tmp_path / "notes.txt"
    script.write_text("just text\n")
    script.chmod(0o755)
    result = doctor_text(script)
    assert (result.returncode, result.stdout) == (126, "")
    assert result.stderr.startswith(f"nixld: {script}") and result.stderr.count("\n") == 1


@pytest.mark.parametrize("what", ["shared library", "file without the x bit"])
def test_what_nixld_run_refuses_as_no_program_doctor_refuses_too_with_126(what, tmp_path, library_dirs, programs):
    if what == "shared library":
        path, reason = f"{library_dirs.a}/libnixldtest.so", "is a shared library"
    else:
        path, reason = tmp_path / "quiet", "permission denied (not executable: chmod +x it)"
        shutil.copy(programs.quiet, path)
        path.chmod(0o644)
    result = doctor_text(path, NIX_LD_LIBRARY_PATH=library_dirs.a)
    assert (result.returncode, result.stdout) == (126, "")
    assert result.stderr.startswith(f"nixld: {path}: {reason}") and result.stderr.count("\n") == 1


@pytest.mark.parametrize("args", [["a", "b"], ["--unknown"], [""]])
def test_usage_errors_exit_2_with_one_line(args):
    result = doctor_text(*args)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("nixld: doctor: ") and result.stderr.endswith("; see 'nixld doctor --help'\n")
    assert result.stderr.count("\n") == 1


def test_help_exits_0():
    result = doctor_text("--help")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("usage: nixld doctor [-h] [--json] [--python PYTHON] [PROGRAM]")


def test_the_json_document_has_every_documented_field(programs, library_dirs):
    document = doctor_json(programs.quiet, NIX_LD_LIBRARY_PATH=library_dirs.a).document
    assert set(document) == {"nixld", "host", "environment", "loaders", "library_dirs", "interpreter_paths", "shims_built",
                             "program", "python", "findings", "ok"}
    assert document["python"] is None  # without --python PYTHON
    assert document["environment"] == {"NIX_LD": REAL_LOADER, "NIX_LD_LIBRARY_PATH": library_dirs.a}
    assert set(loader_entry(document)) == {
        "system", "path", "source", "overrides", "unset", "exists", "target", "kind", "machine", "libc",
        "libc_version", "libc_release", "options", "shim", "error", "fix", "usable"}
    assert set(document["library_dirs"][0]["directories"][0]) == {
        "path", "relative", "exists", "is_directory", "shared_objects", "other_machines", "error"}
    assert set(document["interpreter_paths"][0]) == {
        "path", "system", "for_libc", "this_machine", "exists", "target", "kind", "machine", "libc", "libc_version",
        "libc_release", "options", "shim"}
    assert set(document["program"]) == {
        "path", "machine", "system", "class", "static", "libc", "interpreter", "well_known_interpreter", "loader",
        "libraries", "missing", "current_directory_paths", "mentions_proc_self_exe", "starts_programs",
        "plan_warnings", "plan_error", "plan_error_kind", "inspect"}
    for finding in document["findings"]:
        assert set(finding) == {"severity", "topic", "message", "fix"}


def test_every_problem_and_warning_is_one_line_with_a_fix(probe, library_dirs):
    report = doctor_json(probe, NIX_LD="/nonexistent/ld.so", NIX_LD_LIBRARY_PATH=f"{library_dirs.empty}:/nowhere",
                         NIX_LD_LOG="loud")
    assert len(report.document["findings"]) >= 4
    for finding in report.document["findings"]:
        assert "\n" not in finding["message"] and finding["fix"] and "\n" not in finding["fix"]


def test_nixld_help_and_run_do_not_import_doctor_nor_pyelftools():
    code = ("import sys, nixld.cli, nixld.doctor\n"
            "print(sorted(m for m in sys.modules if m.startswith('elftools')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert (result.returncode, result.stdout) == (0, "[]\n"), result.stderr
    code = "import sys, nixld.cli\nprint('nixld.doctor' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.stdout == "False\n"
