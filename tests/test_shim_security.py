"""Secure mode, tried as an attacker would: set-user-ID and set-group-ID programs owned by root,
started by nobody (setpriv) with an environment of the attacker's choosing, through the shim,
the compiled launcher and `nixld run`. Nothing of the caller's may be loaded with the program's
privileges, and nothing of the process's memory may come back in a message.

The attacker's library (libnixldtest.so built with MARK) leaves a file behind if it is ever
loaded; so does the attacker's "loader". Needs root, to give programs to root with the bits
set, as CI runs; the default loader is provided, where a test needs it, in a mount namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import namedtuple
from pathlib import Path

import pytest
from conftest import FOREIGN, PROGRAMS, compile_all, require
from shim_c import unsecure_variables
from test_shim import DEFAULT_LIBRARY_DIR, DEFAULT_LOADER, SECURE_MODE_NO_DEFAULT_LOADER, marking_loader

import nixld

TIMEOUT = 30
NOBODY = 65534
LOADER = "/lib64/ld-linux-x86-64.so.2"
MUSL_LOADER = "/lib/ld-musl-x86_64.so.1"
FOREIGN_MUSL = "-Wl,--dynamic-linker=/nix/store/00000000000000000000000000000000-musl-1.2.3/lib/ld-musl-x86_64.so.1"
TRUSTED = b"the trusted library"

World = namedtuple("World", "root attacker mark loader_mark evil_loader setuid_probe setgid_probe setuid_uses_library "
                            "foreign_setuid_probe foreign_uses_library")


@pytest.fixture(scope="module")
def world() -> World:
    """In a fresh directory under /tmp that nobody may enter: trusted/ (root's, with the
    library the programs need), attacker/ (nobody's, with the attacker's libnixldtest.so and
    "loader"), a copy of the shim, and the programs: probe and uses-library with that shim as
    interpreter (uses-library finds the trusted library through its RUNPATH), each set-user-ID
    or set-group-ID root, and the foreign ones `nixld run` and `nixld wrap` start."""
    require(os.geteuid() == 0, "root, to give programs to root with the set-user-ID bit for nobody to run",
            how="run the tests as root, as .ci/run does")
    require(shutil.which("setpriv") is not None, "setpriv, to run programs as nobody", package="util-linux")
    root = Path(tempfile.mkdtemp(prefix="nixld-secure-", dir="/tmp"))
    root.chmod(0o755)
    trusted, attacker = root / "trusted", root / "attacker"
    trusted.mkdir()
    attacker.mkdir()
    attacker.chmod(0o777)
    mark = attacker / "library-loaded"
    shim = root / "shim"
    shutil.copy(nixld.shim_path(), shim)
    interpreter = f"-Wl,--dynamic-linker={shim}"
    compile_all([
        ["-shared", "-fPIC", f'-DGREETING="{TRUSTED.decode()}"', "-o", str(trusted / "libnixldtest.so"),
         str(PROGRAMS / "nixldtest.c")],
        ["-shared", "-fPIC", '-DGREETING="the caller\'s library"', f'-DMARK="{mark}"',
         "-o", str(attacker / "libnixldtest.so"), str(PROGRAMS / "nixldtest.c")],
        ["-o", str(root / "setuid-probe"), str(PROGRAMS / "probe.c"), interpreter],
        ["-o", str(root / "foreign-setuid-probe"), str(PROGRAMS / "probe.c"), FOREIGN],
    ])
    compile_all([
        ["-o", str(root / "setuid-uses-library"), str(PROGRAMS / "uses_library.c"), f"-L{trusted}", "-lnixldtest",
         f"-Wl,--enable-new-dtags,-rpath,{trusted}", interpreter],
        ["-o", str(root / "foreign-uses-library"), str(PROGRAMS / "uses_library.c"), f"-L{trusted}", "-lnixldtest",
         FOREIGN],
    ])
    shutil.copy(root / "setuid-probe", root / "setgid-probe")
    for name, mode in (("setuid-probe", 0o4755), ("setgid-probe", 0o2755), ("setuid-uses-library", 0o4755),
                       ("foreign-setuid-probe", 0o4755)):
        (root / name).chmod(mode)
    loader_mark = attacker / "loader-ran"
    evil_loader = marking_loader(attacker, loader_mark)
    yield World(root, attacker, mark, loader_mark, evil_loader, str(root / "setuid-probe"), str(root / "setgid-probe"),
                str(root / "setuid-uses-library"), str(root / "foreign-setuid-probe"),
                str(root / "foreign-uses-library"))
    shutil.rmtree(root)


def hostile_environment(world: World, **more: str) -> dict:
    """Everything the attacker can set: nix-ld's variables naming their loader and library (in
    nix-ld 2.x's and 1.x's spellings), glibc's own, and a log level that would say more."""
    attacker = str(world.attacker)
    return {"PATH": "/usr/bin:/bin", "NIX_LD": world.evil_loader, "NIX_LD_x86_64_linux": world.evil_loader,
            "NIX_LD_x86_64-linux": world.evil_loader, "NIX_LD_LIBRARY_PATH": attacker,
            "NIX_LD_LIBRARY_PATH_x86_64_linux": attacker, "NIX_LD_LIBRARY_PATH_x86_64-linux": attacker,
            "LD_LIBRARY_PATH": attacker, "LD_PRELOAD": str(world.attacker / "libnixldtest.so"),
            "NIX_LD_LOG": "trace", "TMPDIR": "/tmp", **more}


def as_nobody(*argv, env: dict, with_default_loader: bool = False) -> subprocess.CompletedProcess:
    """`argv` run as nobody (no groups, no capabilities) with exactly `env`, which only the
    program itself gets (the tools that set the stage run as root, with a clean one); with
    nix-ld's default loader in place (a mount namespace with a tmpfs on /run holding a copy of
    the host's loader) when asked."""
    variables = [os.fsencode(name) + b"=" + os.fsencode(value) for name, value in env.items()]
    command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "/usr/bin/env", "-i",
               *variables, *map(os.fsencode, argv)]
    if with_default_loader:
        script = 'mount -t tmpfs tmpfs /run && mkdir -p "$1" && cp "$2" "$1/ld.so" && shift 2 && exec "$@"'
        command = ["unshare", "-m", "/bin/sh", "-c", script, "sh", DEFAULT_LIBRARY_DIR, LOADER, *command]
    return subprocess.run(command, env={"PATH": "/usr/bin:/bin"}, capture_output=True, timeout=TIMEOUT)


def assert_nothing_of_the_callers_ran(world: World) -> None:
    assert not world.mark.exists(), "the caller's library was loaded"
    assert not world.loader_mark.exists(), "the caller's loader was run"


def environment_seen(result: subprocess.CompletedProcess) -> dict:
    assert (result.returncode, result.stderr) == (0, b"")
    return dict(entry.split(b"=", 1) for entry in result.stdout.split(b"\0")[:-1])


# ---------------------------------------------------------------------------------------------
# The shim


@pytest.mark.parametrize("bit", ["setuid", "setgid"])
def test_the_caller_chooses_neither_the_loader_nor_the_libraries_of_a_privileged_program(world, bit):
    program = world.setuid_probe if bit == "setuid" else world.setgid_probe
    env = hostile_environment(world)
    result = as_nobody(program, "ids", env=env, with_default_loader=True)
    assert (result.returncode, result.stderr) == (0, b"")
    privileged = "uid=65534 euid=0 gid=65534 egid=65534" if bit == "setuid" else "uid=65534 euid=65534 gid=65534 egid=0"
    assert result.stdout == f"{privileged}\n".encode()
    result = as_nobody(world.setuid_uses_library, env=env, with_default_loader=True)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", TRUSTED + b"\n")
    assert_nothing_of_the_callers_ran(world)


def test_a_privileged_program_keeps_the_callers_nix_ld_variables_and_loses_what_glibc_removes(world):
    """The shim changes nothing in the environment; glibc's loader, in secure mode, removes
    LD_LIBRARY_PATH, LD_PRELOAD and TMPDIR, as for any set-user-ID program."""
    env = hostile_environment(world)
    seen = environment_seen(as_nobody(world.setuid_probe, "environ", env=env, with_default_loader=True))
    for name in ("NIX_LD", "NIX_LD_x86_64_linux", "NIX_LD_x86_64-linux", "NIX_LD_LIBRARY_PATH", "NIX_LD_LOG", "PATH"):
        assert seen[name.encode()] == env[name].encode()
    assert not {b"LD_LIBRARY_PATH", b"LD_PRELOAD", b"TMPDIR"} & set(seen)


HOSTILE_VALUES = {
    "a loader path of 4,000 bytes": {"NIX_LD": "/x" * 2000, "NIX_LD_x86_64_linux": "/y" * 2000},
    "a log level of 1,100 bytes": {"NIX_LD_LOG": "z" * 1100},
    "a library path of 100,000 bytes": {"NIX_LD_LIBRARY_PATH": "/l" * 50000, "LD_LIBRARY_PATH": "/m" * 50000},
    "control characters": {"NIX_LD": "/evil\n\x1b[2J", "NIX_LD_LOG": "info\n"},
}


@pytest.mark.parametrize("values", HOSTILE_VALUES)
def test_without_the_default_loader_a_privileged_program_fails_with_one_fixed_line(world, values):
    """Whatever the caller sets, the line is the same bytes: no value of theirs, no memory of
    the process."""
    require(not os.path.exists(DEFAULT_LOADER), f"a machine without {DEFAULT_LOADER} (this one has it)",
            how="run the tests where NixOS's nix-ld is not set up")
    result = as_nobody(world.setuid_probe, "exit", "0", env=hostile_environment(world, **HOSTILE_VALUES[values]))
    assert (result.returncode, result.stdout, result.stderr) == (126, b"", SECURE_MODE_NO_DEFAULT_LOADER.encode() + b"\n")
    assert_nothing_of_the_callers_ran(world)


def test_a_long_path_to_a_privileged_program_does_not_come_back_in_the_message(world):
    """AT_EXECFN, the path the caller exec'd, is the caller's choice: secure mode leaves it out."""
    require(not os.path.exists(DEFAULT_LOADER), f"a machine without {DEFAULT_LOADER} (this one has it)",
            how="run the tests where NixOS's nix-ld is not set up")
    directory = Path(tempfile.mkdtemp(prefix="nixld-long-", dir=world.attacker))
    directory.chmod(0o755)
    while len(os.fsencode(directory)) < 3800:
        directory = directory / ("d" * 200)
    directory.mkdir(parents=True)
    link = directory / "probe"
    link.symlink_to(world.setuid_probe)
    result = as_nobody(link, "exit", "0", env=hostile_environment(world))
    assert (result.returncode, result.stderr) == (126, SECURE_MODE_NO_DEFAULT_LOADER.encode() + b"\n")


# ---------------------------------------------------------------------------------------------
# The compiled launcher (nixld wrap --format binary), made set-user-ID by its owner


def set_user_id_wrapper(world: World, nixld_script: str, name: str, program: str, loader: str, directory: Path) -> str:
    """`nixld wrap --format binary` of `program` with `loader` and `directory`, owned by root with
    the set-user-ID bit, as an administrator would make it."""
    wrapper = world.root / name
    result = subprocess.run([nixld_script, "wrap", "--format", "binary",
                             "--ld", loader, "-L", str(directory), "-o", str(wrapper), program],
                            capture_output=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    wrapper.chmod(0o4755)
    return str(wrapper)


def test_a_set_user_id_wrapper_loads_only_the_directories_fixed_when_it_was_made(world, nixld_script):
    wrapper = set_user_id_wrapper(world, nixld_script, "wrapped-uses-library", world.foreign_uses_library, LOADER,
                                  world.root / "trusted")
    result = as_nobody(wrapper, env=hostile_environment(world))
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", TRUSTED + b"\n")
    assert_nothing_of_the_callers_ran(world)


def test_a_set_user_id_wrapper_passes_the_environment_a_set_user_id_program_would_see(world, nixld_script, tmp_path):
    """glibc's loader started by hand in secure mode cannot remove a variable itself (2.36
    asserts in _dl_start_args_adjust): the launcher hands it the environment without any
    variable glibc removes, TMPDIR included, and leaves the rest as it is."""
    wrapper = set_user_id_wrapper(world, nixld_script, "wrapped-probe", world.foreign_setuid_probe, LOADER, tmp_path)
    env = hostile_environment(world, GCONV_PATH="/x", MALLOC_CHECK_="3", LANG="C.UTF-8")
    result = as_nobody(wrapper, "ids", env=env)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", b"uid=65534 euid=0 gid=65534 egid=65534\n")
    seen = environment_seen(as_nobody(wrapper, "environ", env=env))
    assert seen == {name.encode(): value.encode() for name, value in env.items() if name.encode() not in unsecure_variables()}


def test_a_set_user_id_wrapper_with_musls_loader_loads_only_the_directories_fixed_when_it_was_made(world, nixld_script,
                                                                                                  tmp_path):
    """musl's loader takes --library-path from its command line whatever AT_SECURE says: only
    the launcher keeps the caller's LD_LIBRARY_PATH out of it."""
    musl_gcc = shutil.which("musl-gcc")
    require(musl_gcc is not None and os.path.exists(MUSL_LOADER), f"musl-gcc and musl's loader {MUSL_LOADER}",
            package="musl-tools")
    trusted, attacker = world.root / "trusted-musl", world.root / "attacker-musl"
    for directory in (trusted, attacker):
        directory.mkdir(exist_ok=True)
    attacker.chmod(0o777)
    mark = attacker / "library-loaded"
    compile_all([["-shared", "-fPIC", f'-DGREETING="{TRUSTED.decode()}"', "-o", str(trusted / "libnixldtest.so"),
                  str(PROGRAMS / "nixldtest.c")],
                 ["-shared", "-fPIC", '-DGREETING="the caller\'s library"', f'-DMARK="{mark}"',
                  "-o", str(attacker / "libnixldtest.so"), str(PROGRAMS / "nixldtest.c")]], compiler=[musl_gcc])
    program = tmp_path / "musl-uses-library"
    compile_all([["-o", str(program), str(PROGRAMS / "uses_library.c"), f"-L{trusted}", "-lnixldtest", FOREIGN_MUSL]],
                compiler=[musl_gcc])
    wrapper = set_user_id_wrapper(world, nixld_script, "wrapped-musl", str(program), MUSL_LOADER, trusted)
    result = as_nobody(wrapper, env={"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": str(attacker)})
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", TRUSTED + b"\n")
    assert not mark.exists(), "the caller's library was loaded"


def test_glibc_removes_no_variable_from_a_set_user_id_program_that_the_launcher_keeps(world):
    """The oracle for the launcher's list: a native set-user-ID program started by nobody, with
    the variables glibc's loader has been known to read (but those that change what the program
    does, such as LD_TRACE_LOADED_OBJECTS); whatever this glibc removes, the
    launcher removes too."""
    program = world.root / "native-setuid-probe"
    compile_all([["-o", str(program), str(PROGRAMS / "probe.c")]])
    program.chmod(0o4755)
    candidates = {name.decode() for name in unsecure_variables()} | {
        "LD_BIND_NOW", "LD_BIND_NOT", "LD_ASSUME_KERNEL",
        "LD_LIBRARY_VERSION", "LD_POINTER_GUARD", "MALLOC_ARENA_MAX", "MALLOC_PERTURB_", "MALLOC_TOP_PAD_",
        "MALLOC_MMAP_MAX_", "LANG", "LC_ALL", "TZ", "HOME", "NIX_LD", "NIX_LD_LIBRARY_PATH"}
    env = {"PATH": "/usr/bin:/bin", **{name: "x" for name in candidates}}
    result = as_nobody(program, "environ", env=env)
    assert result.returncode == 0  # stderr: what the loader says of LD_DEBUG=x, LD_AUDIT=x...
    seen = dict(entry.split(b"=", 1) for entry in result.stdout.split(b"\0")[:-1])
    removed = {name for name in env if name.encode() not in seen}
    assert "LD_LIBRARY_PATH" in removed  # the program did run in secure mode
    assert removed <= {name.decode() for name in unsecure_variables()}


# ---------------------------------------------------------------------------------------------
# nixld run


def test_nixld_run_starts_a_set_user_id_program_without_its_privileges(world):
    """Started by hand through the loader, a program does not gain the privileges its file's
    bits grant: the caller's choice of loader and libraries then affects the caller alone.
    (nixld's main runs as nobody in a Python that imported it as root and then gave up root:
    the virtualenv it lives in may be where nobody can reach it.)"""
    code = ("import os, sys\nimport nixld.cli, nixld.commands.run, nixld.loader, nixld._exec\n"
            f"os.setgroups([])\nos.setresgid({NOBODY}, {NOBODY}, {NOBODY})\nos.setresuid({NOBODY}, {NOBODY}, {NOBODY})\n"
            "sys.exit(nixld.cli.main(sys.argv[1:]))")
    env = hostile_environment(world, NIX_LD=LOADER, NIX_LD_x86_64_linux=LOADER, NIX_LD_LOG="warn")
    del env["LD_PRELOAD"]  # it would be Python's, started as root
    result = subprocess.run([sys.executable, "-c", code, "run", world.foreign_setuid_probe, "ids"], env=env,
                            capture_output=True, timeout=TIMEOUT)
    assert (result.returncode, result.stdout) == (0, b"uid=65534 euid=65534 gid=65534 egid=65534\n")
    assert result.stderr == (f"nixld: warn: {world.foreign_setuid_probe} is set-user-ID or set-group-ID; started "
                             "through a loader it runs without those privileges\n").encode()
