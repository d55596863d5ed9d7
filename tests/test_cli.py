"""The `nixld` command line: options, usage errors, the dry-run plan, and a light run path."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from crafted import write_elf, write_loader

import nixld
import nixld.commands.demo
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


def test_a_one_character_directory_attached_to_l_is_the_directory(crafted):
    program, _, env = crafted
    assert dry_run(env, "-L.", program)["library_path"] == [".", "/nix/lib"]


def test_a_lone_dash_is_a_program_name_not_an_option(crafted, tmp_path):
    """As for getopt, `-` is an operand: here, a program found on PATH."""
    program, _, env = crafted
    (tmp_path / "bin").mkdir()
    shutil.copy(program, tmp_path / "bin" / "-")
    assert dry_run({**env, "PATH": str(tmp_path / "bin")}, "-")["program"] == str(tmp_path / "bin" / "-")


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
        (["frobnicate"], "unknown command 'frobnicate' (commands: run, inspect, find-libs, wrap, doctor, shim, python-hook, demo); see 'nixld --help'"),
        (["run"], "run: no PROGRAM given; see 'nixld run --help'"),
        (["run", "--bogus", "x"], "run: unknown option '--bogus'; see 'nixld run --help'"),
        (["run", "-L"], "run: -L needs a value; see 'nixld run --help'"),
        (["run", "--ld"], "run: --ld needs a value; see 'nixld run --help'"),
        (["run", "--ld=", "x"], "run: --ld needs a non-empty value; see 'nixld run --help'"),
        (["run", "-L", "", "x"], "run: -L needs a non-empty value; see 'nixld run --help'"),
        (["demo", "extra"], "demo takes no arguments; see 'nixld demo --help'"),
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


def test_the_dry_run_plans_with_the_callers_environment_not_pythons():
    """With no locale set, CPython adds LC_CTYPE to its own environment (PEP 538), which nixld
    must not pass on: the dry run says the environment is left as it is, and the program, run,
    gets exactly its caller's."""
    caller = {"PATH": "/usr/bin:/bin", "NIX_LD": REAL_LOADER}
    pythons = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('LC_CTYPE'))"], env=caller,
                             capture_output=True, text=True, check=True).stdout
    assert pythons != "None\n"  # else nothing here tells Python's environment from the caller's
    assert dry_run(caller, "/usr/bin/env", "-0")["env_changes"] == {}
    ran = nixld_command("run", "/usr/bin/env", "-0", env=caller)
    assert (ran.returncode, ran.stderr) == (0, "")
    assert dict(entry.split("=", 1) for entry in ran.stdout.split("\0") if entry) == caller


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


# What a shell shows for a program killed by SIGPIPE, as coreutils are under `| head`.
SIGPIPE_STATUS = 141
# As a user runs it: Python buffers stdout and stderr unless PYTHONUNBUFFERED says otherwise.
HOST_ENV = {**{key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"},
            "NIX_LD": REAL_LOADER}
# Every command that writes to stdout, and what it writes there.
WRITERS = [
    ["--help"],
    ["--version"],
    ["run", "--help"],
    ["run", "--dry-run", "/usr/bin/true"],
    ["inspect", "/usr/bin/true"],
    ["inspect", "--tree", "/usr/bin/true"],
    ["inspect", "--json", "/usr/bin/true"],
    ["inspect", "--help"],
    ["demo"],
]


def command_id(value):
    return (" ".join(value) or "no arguments") if isinstance(value, list) else None


def nixld_redirected(redirection, *args, env=HOST_ENV):
    """The `nixld` console script with a shell redirection applied: `>&-` starts it with fd 1
    closed (which Python shows as sys.stdout None), `2>/dev/full` with a stderr that fails."""
    return subprocess.run(["bash", "-c", f'exec "$@" {redirection}', "bash", str(NIXLD_SCRIPT), *args],
                          env=env, capture_output=True, text=True)


@pytest.mark.parametrize("args", WRITERS, ids=command_id)
def test_output_into_a_pipe_nobody_reads_ends_quietly_with_the_sigpipe_status(args):
    """As `nixld ... | head` when head has already gone: no traceback, no message."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([str(NIXLD_SCRIPT), *args], env=HOST_ENV, stdout=write_end,
                                stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (SIGPIPE_STATUS, "")


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("style", [[], ["--tree"], ["--json"]], ids=["report", "tree", "json"])
def test_a_reader_that_leaves_mid_output_ends_inspect_quietly_with_the_sigpipe_status(style, unbuffered):
    """`nixld inspect A B C... | head -c1`, with more output than the pipe holds, so that
    nixld is still writing when the reader leaves. Unbuffered, that write is cut short
    rather than failed: nixld must write the rest, and fail then."""
    env = {**HOST_ENV, "PYTHONUNBUFFERED": "1"} if unbuffered else HOST_ENV
    programs = ["/usr/bin/env", "/usr/bin/true", "/bin/ls"] * 120
    child = subprocess.Popen([str(NIXLD_SCRIPT), "inspect", *style, *programs], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert os.read(child.stdout.fileno(), 1)
    child.stdout.close()
    stderr = child.stderr.read()
    child.stderr.close()
    assert (child.wait(), stderr) == (SIGPIPE_STATUS, b"")


def test_main_returns_the_sigpipe_status_rather_than_killing_its_caller(monkeypatch, capsys):
    class ReaderGone(io.RawIOBase):
        def writable(self):
            return True

        def write(self, data):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(ReaderGone()))
    assert cli.main(["--version"]) == SIGPIPE_STATUS
    assert capsys.readouterr().err == ""


def test_main_writes_to_a_stdout_redirected_to_text(monkeypatch):
    """A Python caller's contextlib.redirect_stdout(io.StringIO()) has no bytes layer."""
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert cli.main(["--version"]) == 0
    assert sys.stdout.getvalue() == f"nixld {nixld.__version__}\n"


def test_the_demo_reports_a_program_killed_by_a_signal_as_a_shell_does(monkeypatch, capsys):
    """The demo's foreign program shares nixld's stdout: under `| head` it may be the one
    that SIGPIPE kills."""
    monkeypatch.setattr(nixld.commands.demo, "run_foreign",
                        lambda *args, **kwargs: subprocess.CompletedProcess(args, -13))
    assert cli.main(["demo"]) == SIGPIPE_STATUS


@pytest.mark.parametrize("args", WRITERS, ids=command_id)
@pytest.mark.parametrize("redirection, reason", [(">&-", "standard output is closed"),
                                                 (">/dev/full", "No space left on device")],
                         ids=["closed", "full"])
def test_output_that_cannot_be_written_is_an_error(args, redirection, reason):
    result = nixld_redirected(redirection, *args)
    assert (result.returncode, result.stderr) == (1, f"nixld: cannot write the output: {reason}\n")


def test_run_with_stdout_closed_still_runs_the_program_with_it_closed():
    """`nixld run` writes nothing itself: a closed stdout is the program's business."""
    check = 'if test -e /proc/$$/fd/1; then echo "fd 1 open" >&2; else echo "fd 1 closed" >&2; fi'
    result = nixld_redirected(">&-", "run", "/bin/sh", "-c", check)
    assert (result.returncode, result.stderr) == (0, "fd 1 closed\n")


@pytest.mark.parametrize("redirection", ["2>&-", "2>/dev/full"], ids=["closed", "full"])
@pytest.mark.parametrize(
    "args, status",
    [
        (["run", "./nope"], 127),
        (["run", "/etc/passwd"], 126),
        (["run", "--bogus", "x"], 2),
        ([], 2),
        (["inspect", "/no/such/program"], 127),
        (["inspect", "--json", "/no/such/program", "/usr/bin/true"], 127),
    ],
    ids=command_id,
)
def test_a_closed_or_failing_stderr_loses_the_message_not_the_exit_status(args, status, redirection):
    result = nixld_redirected(redirection, *args)
    assert result.returncode == status
    if args[:2] == ["inspect", "--json"]:
        assert ["error" in document for document in json.loads(result.stdout)] == [True, False]


@pytest.mark.parametrize("redirection", ["2>&-", "2>/dev/full"], ids=["closed", "full"])
@pytest.mark.parametrize(
    "args, output",
    [
        (["run", "--ld", REAL_LOADER, "/bin/sh", "-c", "echo ran"], "ran\n"),
        (["demo"], "greetings from libnixld-demo.so"),
    ],
    ids=["run", "demo"],
)
def test_the_plan_reported_to_a_closed_or_failing_stderr_does_not_stop_the_launch(args, output, redirection):
    result = nixld_redirected(redirection, *args, env={**HOST_ENV, "NIX_LD_LOG": "info"})
    assert result.returncode == 0
    assert output in result.stdout


def test_run_help_tells_a_nixos_user_what_they_need():
    result = subprocess.run([str(NIXLD_SCRIPT), "run", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "programs.nix-ld.enable = true" in result.stdout and "set NIX_LD" in result.stdout


def test_the_readmes_first_screen_tells_a_nixos_user_what_they_need():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    first_screen = readme[:readme.index("## Set-up")]
    assert "programs.nix-ld.enable = true;" in first_screen and "NIX_LD" in first_screen
