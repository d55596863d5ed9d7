"""The `nixld` command line: options, usage errors, the dry-run plan, and a light run path."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from crafted import write_elf, write_loader

import nixld
from nixld import cli

REAL_LOADER = "/lib64/ld-linux-x86-64.so.2"
NIXLD_SCRIPT = Path(sys.executable).with_name("nixld")


@pytest.fixture
def crafted(tmp_path):
    program = write_elf(tmp_path / "tool")
    loader = write_loader(tmp_path / "ld.so")
    env = {key: value for key, value in os.environ.items() if key != "LD_LIBRARY_PATH"}
    env.update(NIX_LD=os.fsdecode(loader), NIX_LD_LIBRARY_PATH="/nix/lib")
    return os.fsdecode(program), os.fsdecode(loader), env


def nixld_command(*args, env):
    """The command line in a child process: the CLI reads its caller's environment from
    /proc/self/environ, which only a new process can be given."""
    return subprocess.run([sys.executable, "-m", "nixld", *args], env=env, capture_output=True, text=True)


def dry_run(env, *args):
    result = nixld_command("run", "--dry-run", *args, env=env)
    assert (result.returncode, result.stderr) == (0, "")
    return json.loads(result.stdout)


def test_version_and_help(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"nixld {nixld.__version__}\n"
    assert cli.main(["--help"]) == 0
    assert "usage: nixld" in capsys.readouterr().out
    assert cli.main(["run", "--help"]) == 0
    assert "--library-path DIR" in capsys.readouterr().out


def test_dry_run_prints_the_plan_as_json_and_runs_nothing(crafted):
    program, loader, env = crafted
    plan = dry_run(env, "-L", "/one", "-L/two", "--library-path", "/three", "--library-path=/four",
                   program, "arg")
    assert plan["mode"] == "library-path"
    assert plan["executable"] == loader
    assert plan["library_path"] == ["/one", "/two", "/three", "/four", "/nix/lib"]
    assert plan["argv"] == [loader, "--library-path", "/one:/two:/three:/four:/nix/lib", "--argv0", program,
                            program, "arg"]
    assert plan["env_changes"] == {}
    assert plan["loader_source"] == "NIX_LD"
    assert {decision["level"] for decision in plan["decisions"]} <= {"info", "trace"}


def test_ld_and_argv0_options_in_both_spellings(crafted, tmp_path):
    program, _, env = crafted
    other = os.fsdecode(write_loader(tmp_path / "other-ld.so"))
    for args in (["--ld", other, "--argv0", "shown"], [f"--ld={other}", "--argv0=shown"]):
        plan = dry_run(env, *args, program)
        assert (plan["loader"], plan["loader_source"]) == (other, "--ld")
        assert plan["argv"][plan["argv"].index("--argv0") + 1] == "shown"


def test_options_end_at_the_program_or_at_double_dash(crafted):
    program, _, env = crafted
    assert dry_run(env, program, "--dry-run", "-L", "x")["argv"][-3:] == ["--dry-run", "-L", "x"]
    assert dry_run(env, "--", program, "-L")["argv"][-1] == "-L"


def test_a_changed_environment_is_shown_in_the_dry_run(crafted, tmp_path):
    program, _, env = crafted
    old = write_loader(tmp_path / "old-ld.so", options=())
    plan = dry_run({**env, "LD_LIBRARY_PATH": "/mine"}, "--ld", os.fsdecode(old), program)
    assert plan["mode"] == "environment"
    assert plan["env_changes"] == {"LD_LIBRARY_PATH": "/mine:/nix/lib"}


@pytest.mark.parametrize(
    "args, complaint",
    [
        ([], "no command given; see 'nixld --help'"),
        (["frobnicate"], "unknown command 'frobnicate' (commands: run, inspect, demo); see 'nixld --help'"),
        (["run"], "run: no PROGRAM given; see 'nixld run --help'"),
        (["run", "--bogus", "x"], "run: unknown option '--bogus'; see 'nixld run --help'"),
        (["run", "-L"], "run: -L needs a value; see 'nixld run --help'"),
        (["run", "--ld"], "run: --ld needs a value; see 'nixld run --help'"),
        (["run", "--ld=", "x"], "run: --ld needs a non-empty value; see 'nixld run --help'"),
        (["run", "-L", "", "x"], "run: -L needs a non-empty value; see 'nixld run --help'"),
        (["demo", "extra"], "demo takes no arguments; see 'nixld --help'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, args, complaint):
    assert cli.main(args) == 2
    assert capsys.readouterr().err == f"nixld: {complaint}\n"


def test_launch_errors_are_one_line_with_the_shell_status(crafted):
    _, _, env = crafted
    missing = nixld_command("run", "/no/such/program", env=env)
    assert (missing.returncode, missing.stderr) == (127, "nixld: /no/such/program: no such file\n")
    directory = nixld_command("run", "/", env=env)
    assert (directory.returncode, directory.stderr) == (126, "nixld: /: is a directory\n")


def test_the_dry_run_plans_with_the_callers_environment_not_pythons(crafted):
    """With no locale set, CPython adds LC_CTYPE to its own environment (PEP 538)."""
    program, _, env = crafted
    bare = {key: value for key, value in env.items() if not key.startswith(("LC_", "LANG"))}
    assert dry_run(bare, program)["env_changes"] == {}


def test_the_run_path_imports_nothing_heavy(tmp_path):
    """`nixld run` must start fast: no pyelftools, argparse, subprocess, json or dataclasses
    (dataclasses pulls in inspect) before the exec."""
    env = {**os.environ, "NIX_LD": REAL_LOADER}
    result = subprocess.run([sys.executable, "-X", "importtime", str(NIXLD_SCRIPT), "run", "/usr/bin/true"],
                            env=env, capture_output=True, text=True, check=True)
    imported = set(re.findall(r"\|\s+([\w.]+)$", result.stderr, re.MULTILINE))
    assert "nixld.loader" in imported
    heavy = {"elftools", "argparse", "subprocess", "json", "dataclasses", "inspect", "typing"}
    assert not {name.split(".")[0] for name in imported} & heavy


def test_the_demo_fails_plainly_then_runs_through_nixld():
    env = {key: value for key, value in os.environ.items() if not key.startswith("NIX_LD")}
    result = nixld_command("demo", env=env)
    assert (result.returncode, result.stderr) == (0, "")
    failure, _, success = result.stdout.partition("$ nixld run")
    assert "fails: No such file or directory" in failure
    assert "greetings from libnixld-demo.so, found without LD_LIBRARY_PATH" in success
    assert "LD_LIBRARY_PATH in my environment: (unset)" in success
