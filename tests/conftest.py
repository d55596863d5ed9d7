"""Shared test set-up: the hypothesis profile, and the C test programs, compiled once per run.

The programs' sources are in tests/programs/. "Foreign" builds name an interpreter that exists
on no machine, so the kernel refuses them exactly as NixOS refuses a binary built for another
distribution; only a loader started by hand (nixld) can run them.

A test that needs something only some machines have calls `require`, which skips it naming the
Debian package to install. With NIXLD_TESTS_STRICT=1 (as in .ci/run) every skip is a failure
that shows its reason, so that nothing goes untested in CI without anyone seeing it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections import namedtuple
from pathlib import Path

import pytest
from crafted import EM_386, EM_X86_64, write_dynamic_elf
from hypothesis import settings

import nixld
from nixld._execve import c_core_unavailable

settings.register_profile("nixld", deadline=None, max_examples=200)
settings.load_profile("nixld")

PROJECT = Path(__file__).resolve().parent.parent
PROGRAMS = PROJECT / "tests" / "programs"

# The tests are about the package as installed, with its compiled core and its demo. From the
# project root, `python -m pytest` (like `python -m nixld`) would import the source tree instead.
_why_not_installed = c_core_unavailable()
if _why_not_installed:
    pytest.exit(f"the tests imported nixld from {os.path.dirname(nixld.__file__)}, which is not "
                f"built ({_why_not_installed}): install it (pip install '.[test]') and run `pytest`, "
                "not `python -m pytest`", returncode=4)


@pytest.fixture(scope="session", autouse=True)
def _start_subprocesses_outside_the_checkout(tmp_path_factory):
    """Every test, and every `python -m nixld` it starts, runs in a scratch directory: from the
    project root, Python would import the source tree rather than the installed package."""
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(previous)


# Skips: named, and fatal in CI

STRICT = "NIXLD_TESTS_STRICT"


def require(condition: bool, missing: str, *, package: str | None = None, how: str | None = None) -> None:
    """Skip the calling test or fixture (or, called at the top of a test module, the module)
    unless `condition`, saying what is `missing` and which Debian `package` provides it (or,
    for what no package provides, `how` to get it). Under NIXLD_TESTS_STRICT=1 the skip is a
    failure."""
    if not condition:
        pytest.skip(f"{missing} (Debian package: {package})" if package else f"{missing} ({how})",
                    allow_module_level=True)


def _strict() -> bool:
    value = os.environ.get(STRICT, "")
    if value not in ("", "0", "1"):
        raise pytest.UsageError(f"{STRICT}={value!r}: set it to 1 (a skipped test fails) or 0")
    return value == "1"


def pytest_configure(config):
    _strict()  # a misspelt value must stop the run, not quietly mean "not strict"


def pytest_report_header(config):
    if _strict():
        return f"{STRICT}=1: a skipped test is a failure"
    return f"skipped tests are not failures ({STRICT}=1 makes them so)"


_Crash = namedtuple("_Crash", "path lineno message")


class _SkipAsFailure:
    """What a failed report shows for a skip in strict mode: the reason, where the test was
    skipped, and why that fails. `reprcrash` puts the reason on the FAILED summary line too."""

    def __init__(self, longrepr):
        path, line, reason = longrepr if isinstance(longrepr, tuple) else ("?", 0, str(longrepr))
        self.reprcrash = _Crash(path, line, reason)
        self.text = f"{reason}\n{path}:{line}: skipped, and {STRICT}=1 makes every skip a failure"

    def toterminal(self, writer) -> None:
        writer.line(self.text)

    def __str__(self) -> str:
        return self.text


def _fail_a_skip_when_strict(report) -> None:
    # An expected failure is reported as skipped too, with `wasxfail`: it stays as it is.
    if report.skipped and not hasattr(report, "wasxfail") and _strict():
        report.outcome = "failed"
        report.longrepr = _SkipAsFailure(report.longrepr)


# Outermost (tryfirst), so that pytest's own wrappers, which turn an expected failure into a
# skip with `wasxfail`, have made the report final.
@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_a_skip_when_strict(outcome.get_result())


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_a_skip_when_strict(outcome.get_result())


FOREIGN_INTERPRETER = "/nix/store/00000000000000000000000000000000-glibc-2.36/lib/ld-linux-x86-64.so.2"
FOREIGN = f"-Wl,--dynamic-linker={FOREIGN_INTERPRETER}"

# Each directory holds its own libnixldtest.so; the greeting tells which one was loaded.
GREETINGS = {"lib-a": "libnixldtest A", "lib-b": "libnixldtest B"}

LibraryDirs = namedtuple("LibraryDirs", "a b empty")

Built = namedtuple(
    "Built",
    "probe native_probe static_probe static_pie_probe uses_library dlopens_library library_dirs"
    " interpreter native_interpreter",
)


def _gcc() -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        # Not a skip: without the compiled programs nothing end-to-end is tested at all.
        pytest.fail("gcc is required to build the end-to-end test programs (tests/programs/*.c)",
                    pytrace=False)
    return gcc


def compile_all(jobs: list[list[str]], cwd: str | os.PathLike | None = None, compiler: list[str] | None = None) -> None:
    """Run the gcc command lines in parallel (in `cwd`, when given; with `compiler`, a cross
    compiler's command, when given); fail the session loudly on the first error."""
    gcc = compiler or [_gcc()]
    running = [
        (job, subprocess.Popen([*gcc, "-O2", "-Wall", "-Wextra", "-Werror", *job], cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               errors="backslashreplace"))
        for job in jobs
    ]
    failures = []
    for job, process in running:
        output, _ = process.communicate(timeout=120)
        if process.returncode != 0:
            failures.append(f"gcc {' '.join(job)}\n{output}")
    if failures:
        pytest.fail("compiling the test programs failed:\n" + "\n".join(failures), pytrace=False)


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    """Every test program, compiled once into a temporary directory (paths as str)."""
    root = tmp_path_factory.mktemp("programs")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    dirs = LibraryDirs(a=root / "lib-a", b=root / "lib-b", empty=root / "lib-empty")
    for directory in dirs:
        directory.mkdir()

    def source(name: str) -> str:
        return str(PROGRAMS / name)

    def output(name: str) -> str:
        return str(bin_dir / name)

    compile_all(
        [["-o", output("probe"), source("probe.c"), FOREIGN],
         ["-o", output("native-probe"), source("probe.c")],
         ["-static", "-o", output("static-probe"), source("probe.c")],
         ["-static-pie", "-o", output("static-pie-probe"), source("probe.c")],
         ["-o", output("dlopens-library"), source("dlopens_library.c"), FOREIGN]]
        + [["-shared", "-fPIC", f'-DGREETING="{GREETINGS[d.name]}"',
            "-o", str(d / "libnixldtest.so"), source("nixldtest.c")] for d in (dirs.a, dirs.b)]
    )
    # Linked against lib-a's copy, without an rpath: at run time it must be found by search.
    compile_all([["-o", output("uses-library"), source("uses_library.c"), f"-L{dirs.a}", "-lnixldtest", FOREIGN],
                 ["-o", output("interpreter"), source("script_interpreter.c"), f"-L{dirs.a}", "-lnixldtest", FOREIGN],
                 ["-o", output("native-interpreter"), source("script_interpreter.c"), f"-L{dirs.a}", "-lnixldtest"]])
    return Built(
        probe=output("probe"),
        native_probe=output("native-probe"),
        static_probe=output("static-probe"),
        static_pie_probe=output("static-pie-probe"),
        uses_library=output("uses-library"),
        dlopens_library=output("dlopens-library"),
        library_dirs=LibraryDirs(*(str(d) for d in dirs)),
        interpreter=output("interpreter"),
        native_interpreter=output("native-interpreter"),
    )


@pytest.fixture(scope="session")
def probe(built) -> str:
    """tests/programs/probe.c built as a foreign program."""
    return built.probe


@pytest.fixture(scope="session")
def native_probe(built) -> str:
    """The same probe with this system's interpreter: a child the foreign probe can start."""
    return built.native_probe


@pytest.fixture(scope="session")
def static_probe(built) -> str:
    """The probe linked statically (ET_EXEC, no interpreter)."""
    return built.static_probe


@pytest.fixture(scope="session")
def static_pie_probe(built) -> str:
    """The probe linked as a static PIE (ET_DYN with an entry point and no interpreter)."""
    return built.static_pie_probe


@pytest.fixture(scope="session")
def uses_library(built) -> str:
    """A foreign program with libnixldtest.so as DT_NEEDED and no rpath."""
    return built.uses_library


@pytest.fixture(scope="session")
def dlopens_library(built) -> str:
    """A foreign program that dlopen()s "libnixldtest.so" by bare name."""
    return built.dlopens_library


@pytest.fixture(scope="session", params=["foreign", "native"])
def script_interpreter(request, built) -> str:
    """A #! interpreter (tests/programs/script_interpreter.c) that needs libnixldtest.so and
    has no rpath: built foreign (its loader exists nowhere) and native (its loader is this
    system's, which exists here but not in a NixOS-like world)."""
    return built.interpreter if request.param == "foreign" else built.native_interpreter


@pytest.fixture(scope="session")
def library_dirs(built) -> LibraryDirs:
    """Directories a and b, each with its own libnixldtest.so, and an empty one."""
    return built.library_dirs


@pytest.fixture(scope="session")
def greetings() -> dict[str, str]:
    """What each directory's libnixldtest.so greets with, by directory name."""
    return dict(GREETINGS)


@pytest.fixture(scope="session")
def nixld_script() -> str:
    """The `nixld` console script installed next to the running interpreter."""
    script = os.path.join(os.path.dirname(sys.executable), "nixld")
    if not os.access(script, os.X_OK):
        pytest.fail(f"the nixld console script is not installed next to {sys.executable}",
                    pytrace=False)
    return script


# Directory names and SONAMEs the inspect tests use to show that paths are bytes: one that
# Latin-1 can spell (but whose UTF-8 bytes differ), one it cannot, one that is not UTF-8 at all.
NON_ASCII = {"latin-1": "bibliothèque".encode(), "beyond-latin-1": "lib€".encode(),
             "not-utf-8": b"lib\xff"}

InspectTree = namedtuple("InspectTree", "root non_ascii")


def _shared(target: Path, *flags: str, soname: bytes | None = None, m32: bool = False) -> list[str]:
    """A gcc job building tests/programs/inspect_library.c as `target` with `flags` after it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return [*(["-m32"] if m32 else []), "-shared", "-fPIC",
            *([os.fsdecode(b"-Wl,-soname," + soname)] if soname else []),
            "-o", str(target), str(PROGRAMS / "inspect_library.c"), "-Wl,--no-as-needed", *flags]


def _executable(target: Path, *flags: str, m32: bool = False) -> list[str]:
    """A gcc job building tests/programs/inspect_program.c as `target` with `flags` after it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return [*(["-m32"] if m32 else []), "-o", str(target), str(PROGRAMS / "inspect_program.c"),
            "-Wl,--no-as-needed", *flags]


def _rpath(*entries) -> list[str]:
    return ["-Wl,--disable-new-dtags", "-Wl,-rpath," + ":".join(map(os.fsdecode, entries))]


def _runpath(*entries) -> list[str]:
    return ["-Wl,--enable-new-dtags", "-Wl,-rpath," + ":".join(map(os.fsdecode, entries))]


@pytest.fixture(scope="session")
def inspect_tree(tmp_path_factory) -> InspectTree:
    """Libraries and programs for `nixld inspect`, one directory per search rule, compiled once.

    Under `root`: prec/ (libprec.so in a/ and b/; programs with an RPATH or a RUNPATH of a/),
    chain/ (libmid.so needs libleaf.so and has no path of its own; libholder.so has an RPATH
    of mid/ and leaf/; librunmid.so needs libleaf.so and has a RUNPATH of an empty directory),
    origin/ ($ORIGIN, ${ORIGIN} and $ORIGIN in a DT_NEEDED), tokens/ ($LIB and $PLATFORM),
    missing/ (libtop.so -> libmiddle.so -> libgone.so, which only gone/ has), slash/ (DT_NEEDED
    with a slash, absolute and relative), same/ (one file as libone.so, a symlink libtwo.so
    and a hard link libthree.so), hw/ (a glibc-hwcaps copy of libhw.so; copies of liblegacy.so
    in legacy/, legacy/tls/ and legacy/x86_64/), nodeflib/ (-z nodefaultlib),
    paths/ (RPATH and RUNPATH entries that do not exist), nonascii/ (directories and SONAMEs
    named by NON_ASCII) and plain (a program with no path of its own)."""
    root = tmp_path_factory.mktemp("inspect")
    r = root

    def dirs(*names) -> list[str]:
        return [str(r / name) for name in names]

    leaves = [
        _shared(r / "prec/a/libprec.so", soname=b"libprec.so"),
        _shared(r / "prec/b/libprec.so", soname=b"libprec.so"),
        _shared(r / "chain/leaf/libleaf.so"),
        _shared(r / "origin/lib/deps/libdeep.so"),
        _shared(r / "origin/bin/libdst.so", soname=b"$ORIGIN/libdst.so"),
        _shared(r / "missing/gone/libgone.so"),
        _shared(r / "slash/libdir/libslash.so"),
        _shared(r / "same/libone.so"),
        _shared(r / "hw/libhw.so", soname=b"libhw.so"),
        _shared(r / "hw/glibc-hwcaps/x86-64-v2/libhw.so", soname=b"libhw.so"),
        _shared(r / "nodeflib/libnodef.so", "-Wl,-z,nodefaultlib", "-lm", soname=b"libnodef.so"),
    ]
    leaves += [_shared(r / "hw/legacy" / subdir / "liblegacy.so", soname=b"liblegacy.so")
               for subdir in ("tls", "x86_64", "")]
    # Wherever $LIB and $PLATFORM may lead on an x86-64 glibc; the loader decides which is used.
    leaves += [_shared(r / "tokens" / lib / "liblibtoken.so", soname=b"liblibtoken.so")
               for lib in ("lib/x86_64-linux-gnu", "lib64", "lib")]
    leaves += [_shared(r / "tokens" / platform / "libplatformtoken.so", soname=b"libplatformtoken.so")
               for platform in ("x86_64", "haswell", "xeon_phi")]
    for label, name in NON_ASCII.items():
        leaves.append(_shared(Path(os.fsdecode(os.fsencode(r / "nonascii") + b"/" + name)) / "libnonascii.so",
                              soname=b"libnonascii.so"))
        leaves.append(_shared(Path(os.fsdecode(os.fsencode(r / "nonascii" / f"needed-{label}") + b"/" + name + b".so")),
                              soname=name + b".so"))
    (r / "chain/empty").mkdir(parents=True)
    compile_all(leaves)

    os.symlink("libone.so", r / "same/libtwo.so")
    os.link(r / "same/libone.so", r / "same/libthree.so")
    (r / "nodeflib/copies").mkdir()
    libm = subprocess.run([_gcc(), "-print-file-name=libm.so.6"], capture_output=True, text=True).stdout.strip()
    shutil.copy(libm, r / "nodeflib/copies/libm.so.6")
    compile_all([
        _shared(r / "chain/mid/libmid.so", f"-L{r}/chain/leaf", "-lleaf"),
        _shared(r / "chain/runmid/librunmid.so", f"-L{r}/chain/leaf", "-lleaf", *_runpath(r / "chain/empty")),
        _shared(r / "origin/lib/liborigin.so", f"-L{r}/origin/lib/deps", "-ldeep", *_runpath("$ORIGIN/deps"),
                soname=b"liborigin.so"),
        _shared(r / "missing/lib/libmiddle.so", f"-L{r}/missing/gone", "-lgone", *_runpath("$ORIGIN")),
    ])
    compile_all([
        _shared(r / "chain/holder/libholder.so", f"-L{r}/chain/mid", "-lmid", f"-Wl,-rpath-link,{r}/chain/leaf",
                *_rpath(*dirs("chain/mid", "chain/leaf"))),
        _shared(r / "missing/lib/libtop.so", f"-L{r}/missing/lib", "-lmiddle",
                f"-Wl,-rpath-link,{r}/missing/gone", *_runpath("$ORIGIN")),
    ])
    leaf_link = f"-Wl,-rpath-link,{r}/chain/leaf:{r}/chain/mid:{r}/missing/gone:{r}/missing/lib:{r}/origin/lib/deps"
    programs = [
        _executable(r / "plain"),
        _executable(r / "prec/rpath-program", f"-L{r}/prec/a", "-lprec", *_rpath(*dirs("prec/a"))),
        _executable(r / "prec/runpath-program", f"-L{r}/prec/a", "-lprec", *_runpath(*dirs("prec/a"))),
        _executable(r / "chain/rpath-program", f"-L{r}/chain/mid", "-lmid", leaf_link,
                    *_rpath(*dirs("chain/mid", "chain/leaf"))),
        _executable(r / "chain/runpath-program", f"-L{r}/chain/mid", "-lmid", leaf_link,
                    *_runpath(*dirs("chain/mid", "chain/leaf"))),
        _executable(r / "chain/holder-program", f"-L{r}/chain/holder", "-lholder", leaf_link,
                    *_rpath(*dirs("chain/holder"))),
        _executable(r / "chain/runmid-program", f"-L{r}/chain/runmid", "-lrunmid", leaf_link,
                    *_rpath(*dirs("chain/runmid", "chain/leaf"))),
        _executable(r / "origin/bin/prog", f"-L{r}/origin/lib", "-lorigin", leaf_link, *_runpath("${ORIGIN}/../lib")),
        _executable(r / "origin/bin/prog-rpath", f"-L{r}/origin/lib", "-lorigin", leaf_link, *_rpath("$ORIGIN/../lib")),
        _executable(r / "origin/bin/needs-dst", str(r / "origin/bin/libdst.so")),
        _executable(r / "tokens/prog", str(r / "tokens/lib64/liblibtoken.so"), str(r / "tokens/x86_64/libplatformtoken.so"),
                    *_rpath(f"{r}/tokens/$LIB", f"{r}/tokens/${{PLATFORM}}")),
        _executable(r / "missing/prog", f"-L{r}/missing/lib", "-ltop", leaf_link, *_runpath("$ORIGIN/lib")),
        _executable(r / "missing/prog-twice", f"-L{r}/missing/gone", "-lgone", f"-L{r}/missing/lib", "-ltop",
                    leaf_link, *_runpath("$ORIGIN/lib")),
        _executable(r / "slash/prog-absolute", str(r / "slash/libdir/libslash.so")),
        _executable(r / "same/prog", f"-L{r}/same", "-lone", "-ltwo", "-lthree", *_runpath("$ORIGIN")),
        _executable(r / "hw/prog", f"-L{r}/hw", "-lhw", *_runpath("$ORIGIN")),
        _executable(r / "hw/prog-legacy", f"-L{r}/hw/legacy", "-llegacy", *_runpath("$ORIGIN/legacy")),
        _executable(r / "nodeflib/prog", f"-L{r}/nodeflib", "-lnodef", *_runpath("$ORIGIN")),
        _executable(r / "nodeflib/prog-with-libm", "-lm", f"-L{r}/nodeflib", "-lnodef", *_runpath("$ORIGIN")),
        _executable(r / "paths/rpath-program", *_rpath(*dirs("paths/nowhere-rpath"))),
        _executable(r / "paths/runpath-program", *_runpath(*dirs("paths/nowhere-runpath"), "$ORIGIN/absent")),
    ]
    for label, name in NON_ASCII.items():
        directory = os.fsencode(r / "nonascii") + b"/" + name
        programs.append(_executable(r / "nonascii" / f"runpath-{label}", os.fsdecode(directory + b"/libnonascii.so"),
                                    *_runpath(directory)))
        needed = os.fsencode(r / "nonascii" / f"needed-{label}") + b"/" + name + b".so"
        programs.append(_executable(r / "nonascii" / f"needs-{label}", os.fsdecode(needed),
                                    *_runpath(f"$ORIGIN/needed-{label}")))
    compile_all(programs)
    # Linked from its own directory: the DT_NEEDED entry is the relative path as given.
    compile_all([_executable(r / "slash/prog-relative", "./libdir/libslash.so")], cwd=r / "slash")
    return InspectTree(root=root, non_ascii=dict(NON_ASCII))


@pytest.fixture(scope="session")
def i386_decoys(tmp_path_factory) -> Path:
    """64-bit programs with a 32-bit library in their way; needs gcc only, as the 32-bit library
    is hand-made (tests/crafted.py) and glibc's loader reads no more of it than its ELF header.
    In the directory returned: d32/libdecoy.so (i386), d64/libdecoy.so (x86-64), `prog` (a
    RUNPATH of d32/ then d64/) and `plain-prog` (no path of its own)."""
    r = tmp_path_factory.mktemp("decoy")
    (r / "d32").mkdir()
    write_dynamic_elf(r / "d32/libdecoy.so", elf_class=32, machine=EM_386, soname=b"libdecoy.so")
    compile_all([_shared(r / "d64/libdecoy.so", soname=b"libdecoy.so")])
    compile_all([
        _executable(r / "prog", str(r / "d64/libdecoy.so"), *_runpath(r / "d32", r / "d64")),
        _executable(r / "plain-prog", str(r / "d64/libdecoy.so")),
    ])
    return r


# glibc 2.36's glibc-hwcaps subdirectories on x86-64, as `ld.so --help` lists them: best first.
X86_64_HWCAPS = ("x86-64-v4", "x86-64-v3", "x86-64-v2")

CacheWorld = namedtuple("CacheWorld", "root cache hw program runpath_program decoy_program")


@pytest.fixture(scope="session")
def cache_world(tmp_path_factory) -> CacheWorld:
    """An ld.so.cache that ldconfig made of directories of ours, at `cache`, with under `root`:
    libcls.so.1 for x86-64 (lib64/), x32 (libx32/) and i386 (lib32/), the last two hand-made (ldconfig
    lists the x32 entry first); `hw`, holding libhwc.so.1 and a copy in each of its glibc-hwcaps
    subdirectories for X86_64_HWCAPS; `program`, which needs both and has no path of its own, so
    that the loader finds both through the cache; `runpath_program`, which has a RUNPATH of hw/,
    and `decoy_program`, which needs libcls.so.1 and has a RUNPATH of libx32/, lib32/ and lib64/,
    in that order. ldconfig runs in a mount namespace whose /var/cache is its own, as it writes its
    aux-cache there even when told to ignore it."""
    unshare = shutil.which("unshare")
    require(unshare is not None, "unshare is missing", package="util-linux")
    ldconfig = shutil.which("ldconfig", path="/sbin:/usr/sbin:" + os.environ.get("PATH", ""))
    require(ldconfig is not None, "ldconfig is missing", package="libc-bin")
    r = tmp_path_factory.mktemp("cache-world")
    hw = r / "hw"
    compile_all([_shared(r / "lib64/libcls.so.1", soname=b"libcls.so.1"),
                 *(_shared(hw / subdir / "libhwc.so.1", soname=b"libhwc.so.1")
                   for subdir in ("", *(f"glibc-hwcaps/{name}" for name in X86_64_HWCAPS)))])
    for directory, elf_class, machine in (("libx32", 32, EM_X86_64), ("lib32", 32, EM_386)):
        (r / directory).mkdir()
        write_dynamic_elf(r / directory / "libcls.so.1", elf_class=elf_class, machine=machine,
                          soname=b"libcls.so.1", needed=(b"libc.so.6",))
    compile_all([_executable(r / "prog", str(r / "lib64/libcls.so.1"), str(hw / "libhwc.so.1")),
                 _executable(r / "prog-runpath", str(hw / "libhwc.so.1"), *_runpath(hw)),
                 _executable(r / "prog-decoys", str(r / "lib64/libcls.so.1"),
                             *_runpath(*(r / directory for directory in ("libx32", "lib32", "lib64"))))])
    conf = r / "ld.so.conf"
    conf.write_text("".join(f"{r / directory}\n" for directory in ("lib64", "libx32", "lib32", "hw")))
    script = 'mount -t tmpfs tmpfs /var/cache && exec "$1" -i -X -C "$2" -f "$3"'
    result = subprocess.run([unshare, "-rm", "/bin/sh", "-c", script, "sh", ldconfig, r / "ld.so.cache", conf],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        pytest.fail(f"ldconfig could not build the cache:\n{result.stdout}{result.stderr}", pytrace=False)
    return CacheWorld(root=r, cache=r / "ld.so.cache", hw=hw, program=r / "prog", runpath_program=r / "prog-runpath",
                      decoy_program=r / "prog-decoys")


@functools.lru_cache(maxsize=None)
def why_gcc_cannot_build_32_bit() -> str | None:
    """None if `gcc -m32` builds and links a program, else the first line of its complaint.
    Found by compiling, once per session: gcc says nothing else about its 32-bit libraries."""
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "probe32.c"
        source.write_text("int main(void) { return 0; }\n")
        result = subprocess.run([_gcc(), "-m32", "-o", str(Path(scratch) / "probe32"), str(source)],
                                capture_output=True, text=True, errors="backslashreplace", timeout=120)
    if result.returncode == 0:
        return None
    return next((line for line in result.stderr.splitlines() if line.strip()), f"exit status {result.returncode}")


I386 = namedtuple("I386", "root loader")
I386_LOADER = "/lib/ld-linux.so.2"


@pytest.fixture(scope="session")
def i386_programs(tmp_path_factory) -> I386:
    """Real 32-bit builds, for the tests that run the real i386 loader `loader`: needs gcc -m32
    (Debian's gcc-multilib) and /lib/ld-linux.so.2 (libc6-i386, which gcc-multilib brings);
    without them, the tests are skipped naming the package. Under `root`: `prog32`, and
    `prog32-lib`, which needs libthirty.so and has a RUNPATH of decoy64/, holding a 64-bit
    one, then lib32/."""
    why = why_gcc_cannot_build_32_bit()
    require(why is None, f"gcc cannot build 32-bit programs ({why})", package="gcc-multilib")
    require(os.path.exists(I386_LOADER), f"the i386 loader {I386_LOADER} is missing", package="libc6-i386")
    r = tmp_path_factory.mktemp("i386")
    compile_all([
        _shared(r / "lib32/libthirty.so", soname=b"libthirty.so", m32=True),
        _shared(r / "decoy64/libthirty.so", soname=b"libthirty.so"),
    ])
    compile_all([
        _executable(r / "prog32", m32=True),
        _executable(r / "prog32-lib", str(r / "lib32/libthirty.so"),
                    *_runpath("$ORIGIN/decoy64", "$ORIGIN/lib32"), m32=True),
    ])
    return I386(root=r, loader=I386_LOADER)


def _sanitizer_runtime() -> str | None:
    """The path of gcc's AddressSanitizer runtime, which a process must load first to run code
    built with -fsanitize=address; None when gcc has none."""
    result = subprocess.run([_gcc(), "-print-file-name=libasan.so"], capture_output=True, text=True)
    path = result.stdout.strip()
    return os.path.realpath(path) if result.returncode == 0 and os.path.isabs(path) and os.path.exists(path) else None


@pytest.fixture(scope="session")
def shim_c_as_built(tmp_path_factory):
    """The shim's C units (tests/shim_c.py) as the shim builds them, opened in this process."""
    import shim_c

    return shim_c.Library(shim_c.build(tmp_path_factory.mktemp("shim-c"), compile_all=compile_all))


@pytest.fixture(scope="session")
def shim_c_sanitized(tmp_path_factory):
    """The same units built with AddressSanitizer and UndefinedBehaviorSanitizer, run in a child
    process: a fault there fails the test with the sanitizer's report."""
    import shim_c

    runtime = _sanitizer_runtime()
    require(runtime is not None, "gcc's AddressSanitizer runtime (libasan.so)", package="libasan8 (gcc-12 brings it)")
    library = shim_c.SanitizedLibrary(
        shim_c.build(tmp_path_factory.mktemp("shim-c-sanitized"), sanitize=True, compile_all=compile_all), runtime)
    yield library
    library.close()


@pytest.fixture(scope="session", params=["as-built", "sanitized"])
def shim_c_library(request):
    """The shim's C units, as built and under the sanitizers: each test that takes this fixture
    runs on both."""
    return request.getfixturevalue(f"shim_c_{request.param.replace('-', '_')}")


# The Python hook's tests: libraries that only a NIX_LD directory holds, extension modules that
# need them, and the Pythons the hook is tried in.

HookTree = namedtuple("HookTree", "nix nix_without_leaf own_leaf d32 nosoname modules bundled_library")

# What each test module's value() returns: its library's hookdep_value(), 2 + the leaf's 40
# (50 for the leaf in own_leaf), plus 100 through the bundled library; `mangled`'s, its own
# copy of the leaf's 60.
HOOK_VALUES = {"nix": 42, "own leaf": 52, "bundled": 142, "mangled": 60}


@pytest.fixture(scope="session")
def hook_tree(tmp_path_factory) -> HookTree:
    """Under `nix`, libhookdep.so.1 (hookdep_value) and libhookleaf.so.1, which it needs; in
    `nix_without_leaf`, libhookdep.so.1 alone; in `own_leaf`, another libhookleaf.so.1 (50, not
    40); in `d32`, an i386 libhookdep.so.1; in `nosoname`, a libhookdep.so.1 without a soname.
    Under `modules` (a PYTHONPATH entry): hookext (value() calls hookdep_value); the package
    `bundled`, whose _core needs libbundled-1a2b3c4d.so in bundled.libs/ (its RUNPATH, as
    auditwheel does it), which needs libhookdep.so.1; the package `fallback`, which imports
    its _speedups (as hookext) and falls back to Python when that fails; the package `mangled`,
    whose _core calls hookleaf() of its own copy, libhookleaf-5e6f7a8b.so in mangled.libs/, as
    auditwheel renames the libraries it bundles. Paths as str."""
    import sysconfig

    include = sysconfig.get_paths()["include"]
    require(os.path.exists(os.path.join(include, "Python.h")), f"Python.h of {sys.executable}",
            package="python3-dev")
    r = tmp_path_factory.mktemp("hook")
    for directory in ("nix", "nix-without-leaf", "own-leaf", "d32", "nosoname", "modules/bundled",
                      "modules/bundled.libs", "modules/fallback", "modules/mangled", "modules/mangled.libs"):
        (r / directory).mkdir(parents=True)

    def library(target, soname, function, add, calls=None, *link):
        return ["-shared", "-fPIC", f"-Wl,-soname,{soname}" if soname else "-Wl,--no-as-needed",
                "-o", str(r / target), str(PROGRAMS / "hook_library.c"), f"-DFUNCTION={function}", f"-DADD={add}",
                *([f"-DCALLS={calls}"] if calls else []), *link]

    def extension(target, module, calls, *link):
        return ["-shared", "-fPIC", f"-I{include}", "-o", str(r / "modules" / target), str(PROGRAMS / "hook_extension.c"),
                f"-DMODULE={module}", f"-DCALLS={calls}", *link]

    compile_all([library("nix/libhookleaf.so.1", "libhookleaf.so.1", "hookleaf", 40),
                 library("own-leaf/libhookleaf.so.1", "libhookleaf.so.1", "hookleaf", 50),
                 library("modules/mangled.libs/libhookleaf-5e6f7a8b.so", "libhookleaf-5e6f7a8b.so", "hookleaf", 60)])
    needs_leaf = (f"-L{r}/nix", "-l:libhookleaf.so.1")
    compile_all([library("nix/libhookdep.so.1", "libhookdep.so.1", "hookdep_value", 2, "hookleaf", *needs_leaf),
                 library("nosoname/libhookdep.so.1", None, "hookdep_value", 2, "hookleaf", *needs_leaf)])
    shutil.copy(r / "nix/libhookdep.so.1", r / "nix-without-leaf/libhookdep.so.1")
    write_dynamic_elf(r / "d32/libhookdep.so.1", elf_class=32, machine=EM_386, soname=b"libhookdep.so.1")
    needs_dep = (f"-L{r}/nix", "-l:libhookdep.so.1", f"-Wl,-rpath-link,{r}/nix")
    bundled_library = r / "modules/bundled.libs/libbundled-1a2b3c4d.so"
    compile_all([library(str(bundled_library), "libbundled-1a2b3c4d.so", "bundled_value", 100, "hookdep_value",
                         *needs_dep),
                 extension("hookext.abi3.so", "hookext", "hookdep_value", *needs_dep),
                 extension("fallback/_speedups.abi3.so", "_speedups", "hookdep_value", *needs_dep)])
    compile_all([extension("bundled/_core.abi3.so", "_core", "bundled_value", f"-L{r}/modules/bundled.libs",
                           "-l:libbundled-1a2b3c4d.so", "-Wl,--enable-new-dtags", "-Wl,-rpath,$ORIGIN/../bundled.libs",
                           *needs_dep)])
    compile_all([extension("mangled/_core.abi3.so", "_core", "hookleaf", f"-L{r}/modules/mangled.libs",
                           "-l:libhookleaf-5e6f7a8b.so", "-Wl,--enable-new-dtags", "-Wl,-rpath,$ORIGIN/../mangled.libs")])
    for package in ("bundled", "mangled"):
        (r / "modules" / package / "__init__.py").write_text("from ._core import value\n")
    (r / "modules/fallback/__init__.py").write_text(
        "try:\n    from ._speedups import value\n    SPEEDUPS = True\n"
        "except ImportError:  # as protobuf and google-crc32c do: pure Python instead, silently\n"
        "    SPEEDUPS = False\n\n    def value():\n        return 0\n")
    return HookTree(nix=str(r / "nix"), nix_without_leaf=str(r / "nix-without-leaf"), own_leaf=str(r / "own-leaf"),
                    d32=str(r / "d32"), nosoname=str(r / "nosoname"), modules=str(r / "modules"),
                    bundled_library=str(bundled_library))


OLDEST_HOOK_PYTHON = "NIXLD_TEST_PYTHON38"


def oldest_hook_python() -> str | None:
    """A Python 3.8, the oldest the hook supports: NIXLD_TEST_PYTHON38, else pyenv's newest 3.8."""
    given = os.environ.get(OLDEST_HOOK_PYTHON)
    if given:
        return given
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = sorted(versions.glob("3.8.*/bin/python3"),
                   key=lambda path: [int(part) for part in path.parent.parent.name.split(".") if part.isdigit()])
    return str(found[-1]) if found else None


@pytest.fixture(scope="session", params=["this-python", "python3.8"])
def hook_python(request) -> str:
    """The Pythons the hook is tried in: the one running the tests (each Python CI has, in
    turn) and 3.8, the oldest the hook supports."""
    if request.param == "this-python":
        return sys.executable
    python = oldest_hook_python()
    require(python is not None and os.access(python, os.X_OK), "a Python 3.8, the oldest the hook supports",
            how=f"set {OLDEST_HOOK_PYTHON} to one, or `pyenv install 3.8`, as CI has")
    return python


HookVenvs = namedtuple("HookVenvs", "plain hooked")


@pytest.fixture(scope="session")
def hook_venvs(hook_python, nixld_script, tmp_path_factory) -> HookVenvs:
    """Two virtualenvs of `hook_python`, their interpreters' paths: `plain`, and `hooked`, where
    `nixld python-hook install` put the hook."""
    root = tmp_path_factory.mktemp("hook-venvs")
    pythons = []
    for name in HookVenvs._fields:
        subprocess.run([hook_python, "-m", "venv", "--without-pip", str(root / name)], check=True, timeout=120)
        pythons.append(str(root / name / "bin" / "python"))
    venvs = HookVenvs(*pythons)
    subprocess.run([nixld_script, "python-hook", "install", "--python", venvs.hooked], check=True, timeout=120,
                   stdout=subprocess.DEVNULL)
    return venvs
