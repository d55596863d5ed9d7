"""nixld end to end: real foreign programs, started through glibc's real loader.

The programs come from tests/programs/ (compiled once per run in conftest.py). The foreign ones
name an interpreter that does not exist, so the kernel refuses them, as NixOS does, unless nixld
starts them. Most behaviours are checked through each of a user's three doors: the `nixld`
script, `python -m nixld`, and nixld.exec_foreign() in a Python process of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
from crafted import overwrite_program_headers
from environments import NIX_LD_TABLE, explicit_environment, run_with_block
from hypothesis import given
from hypothesis import strategies as st

import nixld

REAL_LOADER = "/lib64/ld-linux-x86-64.so.2"
DEFAULT_LOADER = "/run/current-system/sw/share/nix-ld/lib/ld.so"
DEFAULT_LIBRARY_DIR = "/run/current-system/sw/share/nix-ld/lib"
LIBM = "/lib/x86_64-linux-gnu/libm.so.6"
EM_AARCH64 = 183
TIMEOUT = 30

# glibc's loader says this (and exits with 127) when a DT_NEEDED library is nowhere on its path.
MISSING_LIBRARY = b"error while loading shared libraries: libnixldtest.so: cannot open shared object file"


def environment(**variables: str | bytes | None) -> dict:
    """A small explicit environment: PATH, NIX_LD, a UTF-8 locale, then `variables` (None unsets)."""
    return explicit_environment(REAL_LOADER, **variables)


def lines(*items: str | bytes) -> bytes:
    """The bytes a program prints when it prints each item on a line of its own."""
    return b"".join(os.fsencode(item) + b"\n" for item in items)


def variable_lines(env: dict, *names: str) -> bytes:
    """What the probe's `env` subcommand prints for these variables of `env`."""
    return lines(*(f"{name}={env[name]}" if name in env else f"{name} unset" for name in names))


# exec_foreign in a Python process of its own: a launch error is reported the way the CLI
# reports it, plus the exception's class name on stdout for the test to check.
EXEC_FOREIGN = """\
import ast, sys
import nixld
arguments = ast.literal_eval(sys.argv[1])
try:
    nixld.exec_foreign(**arguments)
except nixld.LaunchError as error:
    print(type(error).__name__)
    sys.stderr.write(f"nixld: {error.message}\\n")
    sys.exit(error.exit_status)
"""


class Launcher:
    """One way into nixld: builds the command line that runs PROGRAM ARGS through it."""

    def __init__(self, name: str, nixld_script: str) -> None:
        self.name = name
        self.cli = {"nixld-script": [nixld_script],
                    "python-m-nixld": [sys.executable, "-m", "nixld"]}.get(name)

    def command(self, program, *args, libs=(), ld=None, argv0=None) -> list:
        if self.cli is None:
            arguments = {
                "path": os.fsencode(program),
                "argv": [os.fsencode(argv0 if argv0 is not None else program),
                         *map(os.fsencode, args)],
                "libs": [os.fsencode(directory) for directory in libs],
                "ld": None if ld is None else os.fsencode(ld),
            }
            return [sys.executable, "-c", EXEC_FOREIGN, repr(arguments)]
        options = []
        for directory in libs:
            options += ["-L", directory]
        if ld is not None:
            options += ["--ld", ld]
        if argv0 is not None:
            options += ["--argv0", argv0]
        return [*self.cli, "run", *options, program, *args]

    def __call__(self, program, *args, env, libs=(), ld=None, argv0=None, **run_kwargs):
        """Run the launch to completion, capturing stdout and stderr."""
        command = self.command(program, *args, libs=libs, ld=ld, argv0=argv0)
        return subprocess.run(command, env=env, capture_output=True, timeout=TIMEOUT, **run_kwargs)


@pytest.fixture(params=["nixld-script", "python-m-nixld", "exec_foreign"])
def launch(request, nixld_script) -> Launcher:
    return Launcher(request.param, nixld_script)


@pytest.fixture(params=["nixld-script", "python-m-nixld"])
def cli(request, nixld_script) -> list:
    """The `nixld` command, as a script or as `python -m nixld`."""
    return Launcher(request.param, nixld_script).cli


def run_cli(cli, *args, env=None, **kwargs):
    return subprocess.run([*cli, *args], env=environment() if env is None else env,
                          capture_output=True, timeout=TIMEOUT, **kwargs)


def assert_one_nixld_line(stderr: bytes, *culprits: str) -> str:
    """stderr is exactly one `nixld: ` line, no traceback, naming every culprit; returns it."""
    text = stderr.decode(errors="backslashreplace")
    assert "Traceback" not in text
    assert text.endswith("\n") and text.count("\n") == 1, text
    assert text.startswith("nixld: "), text
    for culprit in culprits:
        assert culprit in text, (culprit, text)
    return text


# ---------------------------------------------------------------------------------------------
# The premise, and the simplest launch


def test_a_foreign_program_is_refused_by_the_kernel_without_nixld(probe):
    with pytest.raises(FileNotFoundError):
        subprocess.run([probe, "argv"], timeout=TIMEOUT)


def test_a_foreign_program_runs(launch, probe):
    result = launch(probe, "argv", "hello", "world", env=environment())
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(probe, "argv", "hello", "world")


# ---------------------------------------------------------------------------------------------
# Where libraries are found


def test_a_needed_library_is_not_found_without_a_library_path(launch, uses_library):
    assert not os.path.exists(DEFAULT_LIBRARY_DIR)  # else nix-ld's default could supply it
    result = launch(uses_library, env=environment())
    assert result.returncode == 127
    assert MISSING_LIBRARY in result.stderr
    assert result.stdout == b""


def test_a_needed_library_is_found_in_nix_ld_library_path(launch, uses_library, library_dirs, greetings):
    result = launch(uses_library, env=environment(NIX_LD_LIBRARY_PATH=library_dirs.a))
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(greetings["lib-a"])


def test_a_needed_library_is_found_in_a_directory_given_with_dash_l(launch, uses_library, library_dirs, greetings):
    result = launch(uses_library, env=environment(), libs=[library_dirs.b])
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(greetings["lib-b"])


@pytest.mark.parametrize("template", ["{empty}:{b}", "{empty},{b}", ",{b},", "/nonexistent:{empty},,{b}:"])
def test_nix_ld_library_path_entries_may_be_separated_by_colons_or_commas(
    launch, uses_library, library_dirs, greetings, template
):
    value = template.format(empty=library_dirs.empty, b=library_dirs.b)
    result = launch(uses_library, env=environment(NIX_LD_LIBRARY_PATH=value))
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(greetings["lib-b"])


@pytest.mark.parametrize("specific, generic", [("a", "b"), ("b", "a")])
def test_the_system_specific_nix_ld_library_path_takes_precedence(
    launch, uses_library, library_dirs, greetings, specific, generic
):
    env = environment(NIX_LD_LIBRARY_PATH_x86_64_linux=getattr(library_dirs, specific),
                      NIX_LD_LIBRARY_PATH=getattr(library_dirs, generic))
    result = launch(uses_library, env=env)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(greetings[f"lib-{specific}"])


def test_nix_ld_1_x_spellings_are_read_where_2_x_ones_are_not_in_the_environment(launch, uses_library, library_dirs,
                                                                                 greetings):
    """NIX_LD_x86_64-linux and NIX_LD_LIBRARY_PATH_x86_64-linux, as environments set for nix-ld
    1.x carry them: read where NIX_LD_x86_64_linux and NIX_LD_LIBRARY_PATH_x86_64_linux are not
    in the environment, over NIX_LD and NIX_LD_LIBRARY_PATH; passed over where they are, even
    empty."""
    env = environment(NIX_LD="/nonexistent/ld.so", NIX_LD_LIBRARY_PATH=library_dirs.a,
                      **{"NIX_LD_x86_64-linux": REAL_LOADER, "NIX_LD_LIBRARY_PATH_x86_64-linux": library_dirs.b})
    result = launch(uses_library, env=env)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(greetings["lib-b"]))
    env = environment(NIX_LD_x86_64_linux="", NIX_LD_LIBRARY_PATH_x86_64_linux=library_dirs.a,
                      **{"NIX_LD_x86_64-linux": "/nonexistent/ld.so",
                         "NIX_LD_LIBRARY_PATH_x86_64-linux": library_dirs.b})
    result = launch(uses_library, env=env)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(greetings["lib-a"]))


def test_the_system_specific_nix_ld_library_path_replaces_the_generic_one(launch, uses_library, library_dirs):
    env = environment(NIX_LD_LIBRARY_PATH_x86_64_linux=library_dirs.empty,
                      NIX_LD_LIBRARY_PATH=library_dirs.a)
    result = launch(uses_library, env=env)
    assert result.returncode == 127
    assert MISSING_LIBRARY in result.stderr


@pytest.mark.parametrize(
    "ld_library_path, dash_l, nix_ld_library_path, winner",
    [("b", "a", "a", "b"), (None, "a", "b", "a"), (None, "b", "a", "b"), ("a", "b", "b", "a")],
)
def test_the_search_order_is_ld_library_path_then_dash_l_then_nix_ld_library_path(
    launch, uses_library, library_dirs, greetings, ld_library_path, dash_l, nix_ld_library_path, winner
):
    env = environment(
        LD_LIBRARY_PATH=ld_library_path and getattr(library_dirs, ld_library_path),
        NIX_LD_LIBRARY_PATH=getattr(library_dirs, nix_ld_library_path),
    )
    result = launch(uses_library, env=env, libs=[getattr(library_dirs, dash_l)])
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(greetings[f"lib-{winner}"])


def test_libraries_found_through_nix_ld_library_path_leave_the_programs_environment_alone(
    launch, uses_library, native_probe, library_dirs, greetings
):
    # uses-library execs the native probe, which reports the environment the program had.
    env = environment(NIX_LD_LIBRARY_PATH=library_dirs.a)
    result = launch(uses_library, native_probe, "env", env=env, libs=[library_dirs.b])
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(greetings["lib-b"]) + variable_lines(env, "LD_LIBRARY_PATH", "NIX_LD_LIBRARY_PATH")


def test_a_library_opened_with_dlopen_by_bare_name_is_found_in_nix_ld_library_path(
    launch, dlopens_library, native_probe, library_dirs, greetings
):
    env = environment(NIX_LD_LIBRARY_PATH=library_dirs.a)
    result = launch(dlopens_library, native_probe, "env", env=env)
    assert (result.returncode, result.stderr) == (0, b"")
    # Found although LD_LIBRARY_PATH is unset: the loader kept the path from its command line.
    assert result.stdout == lines(greetings["lib-a"]) + variable_lines(env, "LD_LIBRARY_PATH", "NIX_LD_LIBRARY_PATH")


def test_a_library_opened_with_dlopen_is_found_in_a_directory_given_with_dash_l(
    launch, dlopens_library, library_dirs, greetings
):
    result = launch(dlopens_library, env=environment(), libs=[library_dirs.b])
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(greetings["lib-b"])


def test_dlopen_by_bare_name_fails_without_a_library_path(launch, dlopens_library):
    result = launch(dlopens_library, env=environment())
    assert result.returncode == 1
    assert b"libnixldtest.so: cannot open shared object file" in result.stderr


# ---------------------------------------------------------------------------------------------
# The environment: nix-ld's four-row table, and nothing added or removed


@pytest.mark.parametrize("row", NIX_LD_TABLE)
def test_the_program_and_its_children_see_exactly_the_callers_library_variables(launch, probe, native_probe, row):
    """Unlike nix-ld: row 1 leaves LD_LIBRARY_PATH unset (not ""), and nothing leaks to children."""
    env = environment(**NIX_LD_TABLE[row])
    result = launch(probe, "env", native_probe, "env", env=env)
    assert (result.returncode, result.stderr) == (0, b"")
    seen = variable_lines(env, "LD_LIBRARY_PATH", "NIX_LD_LIBRARY_PATH")
    assert result.stdout == seen + seen  # the program's view, then its child's


def test_children_do_not_inherit_the_library_path(launch, uses_library, native_probe, library_dirs, greetings):
    # The program needs the library path (it starts), yet its child sees none of it.
    env = environment(NIX_LD_LIBRARY_PATH=library_dirs.a)
    result = launch(uses_library, native_probe, "env", native_probe, "env", env=env, libs=[library_dirs.b])
    assert (result.returncode, result.stderr) == (0, b"")
    seen = variable_lines(env, "LD_LIBRARY_PATH", "NIX_LD_LIBRARY_PATH")
    assert result.stdout == lines(greetings["lib-b"]) + seen + seen


def parse_env_output(output: bytes) -> dict:
    return dict(line.split(b"=", 1) for line in output.splitlines())


def test_the_program_gets_the_callers_environment_exactly(launch, probe, library_dirs):
    env = environment(
        LD_LIBRARY_PATH="/some/lib:;/other",
        NIX_LD_LIBRARY_PATH=library_dirs.a,
        NIX_LD_LOG="error",
        EMPTY="",
        WITH_EQUALS="a=b=c",
        NOT_UTF8=b"\xff\xfe",
    )
    result = launch(probe, "env", "/usr/bin/env", env=env, libs=[library_dirs.b])
    assert (result.returncode, result.stderr) == (0, b"")
    ld_library_path, _, env_output = result.stdout.split(b"\n", 2)
    assert ld_library_path == b"LD_LIBRARY_PATH=/some/lib:;/other"
    expected = {os.fsencode(name): os.fsencode(value) for name, value in env.items()}
    assert parse_env_output(env_output) == expected


def test_the_cli_gives_the_program_the_callers_environment_even_under_the_c_locale(cli, probe):
    """With no LANG or LC_* set, Python coerces the C locale by setting LC_CTYPE in its own
    environment (PEP 538); the program must not inherit that from nixld's command line."""
    env = environment(LANG=None)
    result = run_cli(cli, "run", probe, "env", "/usr/bin/env", env=env)
    assert (result.returncode, result.stderr) == (0, b"")
    env_output = result.stdout.split(b"\n", 2)[2]
    assert parse_env_output(env_output) == {os.fsencode(k): os.fsencode(v) for k, v in env.items()}


def test_the_cli_passes_on_the_callers_environment_block_entry_for_entry(cli, probe):
    """A name given twice stays given twice, in its place (getenv() finds the first, and
    so must the program), and an entry without "=" is passed on too: the block is the
    caller's, not a dictionary made of it."""
    entries = [b"PATH=/usr/bin:/bin", b"LANG=C.UTF-8", b"NIX_LD=" + REAL_LOADER.encode(), b"TWICE=first",
               b"NO_EQUALS_SIGN", b"TWICE=second", b"=nameless"]
    result = run_with_block([*cli, "run", probe, "env", "/usr/bin/env"], entries, TIMEOUT)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout.split(b"\n", 2)[2].splitlines() == entries


def test_of_two_ld_library_path_entries_the_last_is_searched_as_by_the_loader_itself(cli, uses_library,
                                                                                   library_dirs, greetings):
    """glibc's loader reads every entry of the block, the last LD_LIBRARY_PATH winning, where
    getenv() finds the first: a program that runs with this block runs through nixld too."""
    entries = [b"PATH=/usr/bin:/bin", b"LANG=C.UTF-8", b"NIX_LD=" + REAL_LOADER.encode(),
               b"LD_LIBRARY_PATH=/nowhere", b"LD_LIBRARY_PATH=" + os.fsencode(library_dirs.a)]
    by_hand = run_with_block([REAL_LOADER, uses_library], entries, TIMEOUT)
    through_nixld = run_with_block([*cli, "run", uses_library], entries, TIMEOUT)
    assert (by_hand.returncode, by_hand.stderr, by_hand.stdout) == (0, b"", lines(greetings["lib-a"]))
    assert (through_nixld.returncode, through_nixld.stderr, through_nixld.stdout) == (0, b"", lines(greetings["lib-a"]))


# ---------------------------------------------------------------------------------------------
# Arguments


ODD_ARGUMENTS = ["with space", "", "  ", "-L", "--ld", "--", "--library-path", "--argv0", "--dry-run",
                 b"\xff\xfe not UTF-8", "tab\there", "\u00fcn\u00efc\u00f8d\u00e9", "*", "$HOME"]


def test_arguments_reach_the_program_unchanged(launch, probe):
    result = launch(probe, "argv", *ODD_ARGUMENTS, env=environment())
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(probe, "argv", *ODD_ARGUMENTS)


@pytest.mark.parametrize("argv0", ["custom-name", "a name with spaces", b"\xffbytes"])
def test_argv0_can_be_chosen(launch, probe, argv0):
    result = launch(probe, "argv", "x", env=environment(), argv0=argv0)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(argv0, "argv", "x")


def test_a_program_named_without_a_slash_is_found_on_path_and_keeps_its_name_as_argv0(launch, probe):
    env = environment(PATH=f"/nonexistent:{os.path.dirname(probe)}:/usr/bin:/bin")
    result = launch(os.path.basename(probe), "argv", env=env)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(os.path.basename(probe), "argv")


def test_a_relative_program_path_is_taken_from_the_working_directory(launch, probe):
    bin_dir = Path(probe).parent
    relative = f"{bin_dir.name}/{Path(probe).name}"  # no leading ./: a path, not a name to search
    result = launch(relative, "argv", env=environment(PATH="/nonexistent"), cwd=bin_dir.parent)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(relative, "argv")


def test_a_program_path_with_spaces_and_undecodable_bytes_runs(launch, probe, tmp_path):
    directory = tmp_path / "dir with spaces"
    directory.mkdir()
    odd = os.path.join(os.fsencode(directory), b"-probe \xff\xfe")
    shutil.copyfile(probe, odd)
    os.chmod(odd, 0o755)
    result = launch(odd, "argv", env=environment())
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(odd, "argv")


@pytest.mark.parametrize("separator", [[], ["--"]])
def test_options_after_the_program_belong_to_the_program(cli, probe, tmp_path, separator):
    args = ["--dry-run", "-L", str(tmp_path), "--ld", "/etc/passwd", "--argv0", "x", "--help", "--"]
    result = run_cli(cli, "run", *separator, probe, "argv", *args)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(probe, "argv", *args)


@pytest.mark.parametrize(
    "options", [["-L", "{b}"], ["-L{b}"], ["--library-path", "{b}"], ["--library-path={b}"]],
    ids=["-L DIR", "-LDIR", "--library-path DIR", "--library-path=DIR"],
)
def test_every_spelling_of_the_library_directory_option_works(cli, uses_library, library_dirs, greetings, options):
    options = [option.format(b=library_dirs.b) for option in options]
    result = run_cli(cli, "run", *options, uses_library)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(greetings["lib-b"])


@given(
    argv0=st.binary(max_size=20).filter(lambda b: b"\0" not in b and b"\n" not in b),
    args=st.lists(st.binary(max_size=20).filter(lambda b: b"\0" not in b and b"\n" not in b), max_size=8),
)
def test_any_argv_reaches_the_program_byte_for_byte(probe, argv0, args):
    """Property: whatever the bytes (but NUL), argv[0] and the arguments arrive unchanged."""
    result = nixld.run_foreign(probe, argv=[argv0, b"argv", *args], env=environment(),
                               capture_output=True, timeout=TIMEOUT)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(argv0, "argv", *args)


# ---------------------------------------------------------------------------------------------
# Exit status, signals, standard streams


@pytest.mark.parametrize("status", [0, 1, 7, 255])
def test_the_exit_status_is_the_programs(launch, probe, status):
    result = launch(probe, "exit", str(status), env=environment())
    assert (result.returncode, result.stdout, result.stderr) == (status, b"", b"")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL, signal.SIGUSR1, signal.SIGINT],
                         ids=lambda s: s.name)
def test_death_by_a_signal_is_death_of_the_launching_process_by_the_same_signal(launch, probe, signum):
    result = launch(probe, "kill", str(int(signum)), env=environment())
    assert result.returncode == -signum
    assert result.stderr == b""


def test_stdin_and_stdout_pass_through(launch, probe):
    data = bytes(range(256)) * 4096 + b"no newline at the end"
    result = launch(probe, "cat", env=environment(), input=data)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == data


def read_a_little_then_close(command, **popen_kwargs) -> tuple[int, bytes]:
    """Start `command`, read 4 bytes of its output, close the pipe: (its status, its stderr)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen_kwargs)
    try:
        assert process.stdout.read(4) == b"y\ny\n"
        process.stdout.close()
        stderr = process.stderr.read()
        return process.wait(timeout=TIMEOUT), stderr
    finally:
        process.kill()
        process.wait()
        process.stderr.close()


def test_the_probe_reports_a_broken_pipe_when_sigpipe_is_ignored(native_probe):
    # The control for the test below: this Python ignores SIGPIPE, and without
    # restore_signals its child inherits that, so its writes fail with EPIPE instead.
    status, stderr = read_a_little_then_close([native_probe, "yes"], restore_signals=False)
    assert status == 1
    assert b"Broken pipe" in stderr


def test_a_reader_that_stops_early_kills_the_program_with_sigpipe(launch, probe):
    """Python ignores SIGPIPE; nixld must give the program back the default before the exec."""
    status, stderr = read_a_little_then_close(launch.command(probe, "yes"), env=environment())
    assert (status, stderr) == (-signal.SIGPIPE, b"")


def _small_file_size_limit() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXFSZ's default action dumps core


def write_past_a_file_size_limit(command, output: Path, **run_kwargs) -> subprocess.CompletedProcess:
    """Run `command` (a `yes`) with stdout on a file that may not grow beyond 4 KiB."""
    with output.open("wb") as stdout:
        return subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE,
                              preexec_fn=_small_file_size_limit, timeout=TIMEOUT, **run_kwargs)


def test_the_probe_reports_a_too_large_file_when_sigxfsz_is_ignored(native_probe, tmp_path):
    # The control for the test below, as for SIGPIPE: Python ignores SIGXFSZ too.
    result = write_past_a_file_size_limit([native_probe, "yes"], tmp_path / "out", restore_signals=False)
    assert result.returncode == 1
    assert b"File too large" in result.stderr


def test_a_program_writing_past_its_file_size_limit_dies_by_sigxfsz(launch, probe, tmp_path):
    result = write_past_a_file_size_limit(launch.command(probe, "yes"), tmp_path / "out", env=environment())
    assert (result.returncode, result.stderr) == (-signal.SIGXFSZ, b"")
    assert (tmp_path / "out").stat().st_size == 4096


def test_output_written_before_exec_foreign_is_not_lost(probe):
    code = f"import nixld\nprint('before')\nnixld.exec_foreign({probe!r}, argv=[{probe!r}, 'argv'])"
    result = subprocess.run([sys.executable, "-c", code], env=environment(), capture_output=True, timeout=TIMEOUT)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines("before", probe, "argv")


# ---------------------------------------------------------------------------------------------
# Programs that need no loader run directly


def test_with_nothing_configured_a_distribution_program_runs_through_its_own_interpreter(launch, native_probe):
    """Off NixOS, with no NIX_LD and no nix-ld default, the program's own interpreter is the
    loader of last resort: `nixld run` works on any machine."""
    assert not os.path.exists(DEFAULT_LOADER)
    env = environment(NIX_LD=None, NIX_LD_LOG="info")
    result = launch(native_probe, "argv", "hi", env=env)
    assert (result.returncode, result.stdout) == (0, lines(native_probe, "argv", "hi"))
    assert b"the program's own interpreter; NIX_LD_x86_64_linux and NIX_LD are unset" in result.stderr


@pytest.mark.parametrize("which", ["static_probe", "static_pie_probe"])
def test_a_static_program_runs_directly_and_needs_no_loader(launch, which, request):
    program = request.getfixturevalue(which)
    env = environment(NIX_LD=None)  # no loader available at all
    result = launch(program, "exe", env=env)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(program)  # the kernel ran it: /proc/self/exe is the program
    result = launch(program, "argv", "x", env=env, argv0="chosen")
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines("chosen", "argv", "x")


def write_script(path: Path, first_line: str, body: str = "") -> str:
    path.write_text(f"#!{first_line}\n{body}")
    path.chmod(0o755)
    return str(path)


def test_a_script_gets_the_arguments_the_kernel_gives_its_interpreter(launch, tmp_path):
    script = write_script(tmp_path / "script", "/bin/sh", 'printf "%s\\n" "$0" "$@"\n')
    result = launch(script, "one", "two words", env=environment(NIX_LD=None))
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(script, "one", "two words")


def test_library_directories_reach_a_script_interpreter_whether_or_not_its_own_loader_exists(
        launch, script_interpreter, library_dirs, greetings, tmp_path):
    """The interpreter needs libnixldtest.so, which only -L names: built native, the kernel
    could start it (and would, without the library); through nixld it gets the directory."""
    script = write_script(tmp_path / "greet", f"{script_interpreter} -x")
    result = launch(script, "one", "two words", env=environment(), libs=[library_dirs.a])
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(greetings["lib-a"], script_interpreter, "-x", script, "one", "two words")
    without = launch(script, env=environment())
    assert without.returncode == 127 and MISSING_LIBRARY in without.stderr


def test_nix_ld_library_path_alone_reaches_a_script_interpreter_as_it_reaches_the_interpreter_run_as_a_program(
        launch, script_interpreter, library_dirs, greetings, tmp_path):
    script = write_script(tmp_path / "greet", script_interpreter)
    env = environment(NIX_LD_LIBRARY_PATH=library_dirs.b)
    as_program = launch(script_interpreter, script, env=env)
    result = launch(script, env=env)
    assert (result.returncode, result.stderr) == (as_program.returncode, as_program.stderr) == (0, b"")
    assert result.stdout == as_program.stdout == lines(greetings["lib-b"], script_interpreter, script)


def test_a_script_whose_interpreter_is_static_runs_directly_unless_library_directories_are_asked_for(
        launch, static_probe, library_dirs, tmp_path):
    script = write_script(tmp_path / "script", f"{static_probe} argv")
    result = launch(script, "x", env=environment(NIX_LD_LIBRARY_PATH=library_dirs.a))
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(static_probe, "argv", script, "x"))
    refused = launch(script, "x", env=environment(), libs=[library_dirs.a])
    assert (refused.returncode, refused.stdout) == (126, b"" if launch.cli else b"NotExecutable\n")
    text = assert_one_nixld_line(refused.stderr, script, f"its #! interpreter {static_probe} is statically linked")
    assert text.endswith("so -L cannot apply: run the script without -L\n")


def test_a_static_program_is_refused_library_directories(launch, static_probe, library_dirs):
    result = launch(static_probe, "argv", env=environment(), libs=[library_dirs.a])
    assert result.returncode == 126
    assert_one_nixld_line(result.stderr, f"{static_probe} is statically linked, so -L cannot apply")


def test_dry_run_of_a_script_plans_its_interpreter_as_the_program(cli, built, library_dirs, tmp_path):
    interpreter = built.native_interpreter
    script = write_script(tmp_path / "greet", f"{interpreter} -x")
    result = run_cli(cli, "run", "--dry-run", "-L", library_dirs.a, script, "one")
    assert (result.returncode, result.stderr) == (0, b"")
    plan = json.loads(result.stdout)
    assert (plan["program"], plan["mode"], plan["executable"]) == (interpreter, "library-path", REAL_LOADER)
    assert plan["argv"] == [REAL_LOADER, "--library-path", f"{library_dirs.a}:{DEFAULT_LIBRARY_DIR}",
                            "--argv0", interpreter, interpreter, "-x", script, "one"]
    assert any(decision["message"] == f"{script}: its #! interpreter {interpreter} is a dynamically linked program: "
               f"starting it through the loader, as `nixld run {interpreter} -x {script}` would"
               for decision in plan["decisions"])


def test_a_script_whose_interpreter_is_missing_fails_as_in_a_shell(launch, tmp_path):
    # Status 127, as bash, dash and env(1) give; one line, no traceback.
    script = tmp_path / "script"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    result = launch(str(script), env=environment())
    assert result.returncode == 127
    assert_one_nixld_line(result.stderr, str(script))


# ---------------------------------------------------------------------------------------------
# The loader settings


def test_nix_ld_for_the_programs_system_wins_over_nix_ld(launch, probe):
    env = environment(NIX_LD="/etc/passwd", NIX_LD_x86_64_linux=REAL_LOADER)
    result = launch(probe, "argv", env=env)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(probe, "argv")


def test_the_loader_option_wins_over_the_environment(launch, probe):
    env = environment(NIX_LD="/etc/passwd", NIX_LD_x86_64_linux="/etc/passwd")
    result = launch(probe, "argv", env=env, ld=REAL_LOADER)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(probe, "argv")


def test_a_trailing_newline_in_nix_ld_is_ignored(launch, probe):
    # As read from ${stdenv.cc}/nix-support/dynamic-linker.
    result = launch(probe, "argv", env=environment(NIX_LD=REAL_LOADER + "\n"))
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(probe, "argv")


@pytest.fixture(scope="module")
def loader_without_options(tmp_path_factory) -> str:
    """glibc's loader as it was before 2.33: no --library-path and no --argv0.

    The loader strcmp()s its arguments with NUL-terminated option names; renaming those two
    in a copy removes the options (their mentions in the --help text have no NUL after them).
    """
    data = Path(REAL_LOADER).read_bytes()
    for option in (b"--library-path", b"--argv0"):
        assert data.count(b"\0" + option + b"\0") == 1
        data = data.replace(b"\0" + option + b"\0", b"\0" + option[:-1] + b"X\0")
    path = tmp_path_factory.mktemp("old-loader") / "ld-linux-x86-64.so.2"
    path.write_bytes(data)
    path.chmod(0o755)
    refused = subprocess.run([str(path), "--library-path", "/", "/usr/bin/true"], capture_output=True,
                             timeout=TIMEOUT)
    assert refused.returncode != 0 and b"unrecognized option '--library-path'" in refused.stderr
    return str(path)


def test_a_loader_without_a_library_path_option_gets_the_path_in_ld_library_path_with_a_warning(
    launch, uses_library, native_probe, library_dirs, greetings, loader_without_options
):
    env = environment(NIX_LD=loader_without_options, NIX_LD_LIBRARY_PATH=library_dirs.a)
    result = launch(uses_library, native_probe, "env", env=env, libs=[library_dirs.b])
    assert result.returncode == 0
    # The old way, and its leak: the program (and so its children) get LD_LIBRARY_PATH.
    assert result.stdout == lines(greetings["lib-b"], f"LD_LIBRARY_PATH={library_dirs.b}:{library_dirs.a}",
                                  f"NIX_LD_LIBRARY_PATH={library_dirs.a}")
    warning = assert_one_nixld_line(result.stderr, loader_without_options, "--library-path")
    assert warning.startswith("nixld: warn: ")


@pytest.mark.parametrize("spelling", ["absolute", "relative"])
def test_a_loader_without_an_argv0_option_warns_naming_the_argv0_the_program_sees(
    launch, probe, loader_without_options, spelling
):
    bin_dir = Path(probe).parent
    program = probe if spelling == "absolute" else f"{bin_dir.name}/{Path(probe).name}"
    env = environment(NIX_LD=loader_without_options)
    result = launch(program, "argv", env=env, argv0="chosen", cwd=bin_dir.parent)
    assert result.returncode == 0
    seen = result.stdout.decode().splitlines()[0]
    assert seen != "chosen"
    warnings = [line for line in result.stderr.decode().splitlines() if "--argv0" in line]
    assert len(warnings) == 1 and warnings[0].startswith("nixld: warn: ")
    assert f"'{seen}'" in warnings[0] and "'chosen'" in warnings[0]


def test_the_native_probe_can_re_execute_itself(native_probe):
    # The control for the test below.
    result = subprocess.run([native_probe, "reexec", "argv", "again"], capture_output=True, timeout=TIMEOUT)
    assert (result.returncode, result.stdout) == (0, lines(native_probe, "argv", "again"))


@pytest.mark.xfail(strict=True, reason="known limitation of exec'ing the loader: the process image is the "
                                       "loader, so /proc/self/exe names it rather than the program "
                                       "(the shim has no such limit: see test_shim.py)")
def test_a_program_can_re_execute_itself_through_proc_self_exe(cli, probe):
    """Rust's std, Electron and many others re-execute /proc/self/exe (nix-ld-facts.md). Under
    `nixld run` they cannot; started through the shim, they can."""
    result = run_cli(cli, "run", probe, "reexec", "argv", "again")
    assert (result.returncode, result.stdout) == (0, lines(probe, "argv", "again"))


# ---------------------------------------------------------------------------------------------
# Logging


@pytest.mark.parametrize("level", [None, "error", "warn", "WARN"])
def test_by_default_nixld_prints_nothing_of_its_own(launch, probe, level):
    result = launch(probe, "argv", env=environment(NIX_LD_LOG=level))
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(probe, "argv")


@pytest.mark.parametrize("level", ["info", "debug", "trace"])
def test_nix_ld_log_info_explains_the_launch_on_stderr(launch, probe, library_dirs, level):
    env = environment(NIX_LD_LOG=level, NIX_LD_LIBRARY_PATH=library_dirs.a)
    result = launch(probe, "argv", env=env)
    assert result.returncode == 0
    assert result.stdout == lines(probe, "argv")
    log = result.stderr.decode().splitlines()
    assert log and all(line.startswith(("nixld: info: ", "nixld: debug: ", "nixld: trace: ")) for line in log), log
    assert any(line.startswith("nixld: info: ") for line in log)
    text = "\n".join(log)
    assert probe in text and REAL_LOADER in text and library_dirs.a in text


def test_an_unknown_log_level_is_warned_about_and_the_program_still_runs(launch, probe):
    result = launch(probe, "argv", env=environment(NIX_LD_LOG="chatty"))
    assert result.returncode == 0
    assert result.stdout == lines(probe, "argv")
    assert assert_one_nixld_line(result.stderr, "chatty").startswith("nixld: warn: ")


# ---------------------------------------------------------------------------------------------
# --dry-run


def test_dry_run_prints_the_plan_as_json_and_runs_nothing(cli, probe, library_dirs, tmp_path):
    target = str(tmp_path / "created")
    env = environment(NIX_LD_LIBRARY_PATH=library_dirs.a)
    result = run_cli(cli, "run", "--dry-run", "-L", library_dirs.b, probe, "touch", target, env=env)
    assert (result.returncode, result.stderr) == (0, b"")
    assert not os.path.exists(target)
    plan = json.loads(result.stdout)
    assert plan["program"] == probe
    assert plan["mode"] == "library-path"
    assert plan["executable"] == plan["loader"] == REAL_LOADER
    assert plan["loader_source"] == "NIX_LD"
    assert plan["library_path"] == [library_dirs.b, library_dirs.a]
    assert plan["argv"] == [REAL_LOADER, "--library-path", f"{library_dirs.b}:{library_dirs.a}",
                            "--argv0", probe, probe, "touch", target]
    assert plan["env_changes"] == {}

    # The control: without --dry-run, the same command does create the file.
    result = run_cli(cli, "run", "-L", library_dirs.b, probe, "touch", target, env=env)
    assert result.returncode == 0 and os.path.exists(target)


def test_dry_run_shows_nix_lds_default_library_directory_when_no_variable_is_set(cli, probe):
    result = run_cli(cli, "run", "--dry-run", probe, env=environment(LD_LIBRARY_PATH="/some/lib"))
    assert (result.returncode, result.stderr) == (0, b"")
    plan = json.loads(result.stdout)
    assert plan["library_path"] == ["/some/lib", DEFAULT_LIBRARY_DIR]
    assert plan["argv"][1:3] == ["--library-path", f"/some/lib:{DEFAULT_LIBRARY_DIR}"]
    assert plan["env_changes"] == {}


def test_dry_run_of_a_static_program_plans_a_direct_launch(cli, static_probe, tmp_path):
    target = str(tmp_path / "created")
    result = run_cli(cli, "run", "--dry-run", "--argv0", "name", static_probe, "touch", target)
    assert (result.returncode, result.stderr) == (0, b"")
    assert not os.path.exists(target)
    plan = json.loads(result.stdout)
    assert (plan["mode"], plan["executable"], plan["loader"]) == ("direct", static_probe, None)
    assert plan["argv"] == ["name", "touch", target]


# ---------------------------------------------------------------------------------------------
# The child-process API


def test_run_foreign_returns_a_completed_process(probe):
    result = nixld.run_foreign(probe, argv=[probe, "cat"], env=environment(), input=b"some input",
                               capture_output=True, timeout=TIMEOUT)
    assert isinstance(result, subprocess.CompletedProcess)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"some input", b"")


def test_run_foreign_passes_its_keywords_to_subprocess_run(probe):
    with pytest.raises(subprocess.CalledProcessError) as raised:
        nixld.run_foreign(probe, argv=[probe, "exit", "3"], env=environment(), check=True, timeout=TIMEOUT)
    assert raised.value.returncode == 3
    result = nixld.run_foreign(probe, argv=[probe, "argv", "é"], env=environment(),
                               stdout=subprocess.PIPE, text=True, timeout=TIMEOUT)
    assert result.stdout == f"{probe}\nargv\né\n"


def test_run_foreign_takes_library_directories_and_a_loader(uses_library, library_dirs, greetings):
    result = nixld.run_foreign(uses_library, [library_dirs.a], env=environment(NIX_LD=None),
                               ld=REAL_LOADER, capture_output=True, timeout=TIMEOUT)
    assert (result.returncode, result.stdout, result.stderr) == (0, lines(greetings["lib-a"]), b"")


def test_spawn_foreign_returns_a_running_popen(probe):
    with nixld.spawn_foreign(probe, argv=[probe, "cat"], env=environment(),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE) as process:
        assert isinstance(process, subprocess.Popen)
        stdout, _ = process.communicate(b"through the pipe", timeout=TIMEOUT)
    assert (process.returncode, stdout) == (0, b"through the pipe")


def test_a_child_of_spawn_foreign_dies_by_sigpipe_when_its_reader_stops(probe):
    process = nixld.spawn_foreign(probe, argv=[probe, "yes"], env=environment(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with process:
        assert process.stdout.read(4) == b"y\ny\n"
        process.stdout.close()
        stderr = process.stderr.read()
        assert (process.wait(timeout=TIMEOUT), stderr) == (-signal.SIGPIPE, b"")


@pytest.mark.parametrize("call", ["run_foreign", "spawn_foreign"])
def test_a_relative_program_is_found_relative_to_cwd_as_popen_finds_it(probe, native_probe, tmp_path, monkeypatch, call):
    """Popen looks for a relative program in `cwd` when one is given; so must nixld, or it
    checks one file and has the loader run another (or refuses a program that is there)."""
    bin_dir = os.path.dirname(probe)
    monkeypatch.chdir(tmp_path)  # where no ./probe exists
    control = subprocess.run(["./" + os.path.basename(native_probe), "argv"], cwd=bin_dir,
                             capture_output=True, timeout=TIMEOUT)
    assert control.stdout == lines("./" + os.path.basename(native_probe), "argv")

    relative = "./" + os.path.basename(probe)
    if call == "run_foreign":
        result = nixld.run_foreign(relative, argv=[relative, "argv"], env=environment(), cwd=bin_dir,
                                   capture_output=True, timeout=TIMEOUT)
        returncode, stdout = result.returncode, result.stdout
    else:
        with nixld.spawn_foreign(relative, argv=[relative, "argv"], env=environment(), cwd=bin_dir,
                                 stdout=subprocess.PIPE) as process:
            stdout, _ = process.communicate(timeout=TIMEOUT)
        returncode = process.returncode
    assert (returncode, stdout) == (0, lines(relative, "argv"))


# ---------------------------------------------------------------------------------------------
# Bad input: refused before anything runs, with one line naming the culprit


BadInput = namedtuple("BadInput", "program env error status culprits")


def _copy(source: str, target: Path, mode: int = 0o755) -> str:
    shutil.copyfile(source, target)
    target.chmod(mode)
    return str(target)


def _patch_machine(source: str, target: Path, machine: int = EM_AARCH64) -> str:
    """A copy of `source` claiming another machine: e_machine is the 16-bit field at offset 18."""
    data = bytearray(Path(source).read_bytes())
    data[18:20] = machine.to_bytes(2, "little")
    target.write_bytes(bytes(data))
    target.chmod(0o755)
    return str(target)


def _truncated(source: str, target: Path, size: int) -> str:
    target.write_bytes(Path(source).read_bytes()[:size])
    target.chmod(0o755)
    return str(target)


def _text_file(target: Path) -> str:
    target.write_text("just some text\n")
    target.chmod(0o755)
    return str(target)


def _shared_library(tmp, built) -> BadInput:
    # Executable (as gcc leaves it), ET_DYN, no interpreter, entry point 0: not a static PIE
    # but a library. Started directly it can only crash (SIGSEGV at address 0); nixld refuses
    # ET_REL and ET_CORE files as "not a program", and must refuse this one before running it.
    library = _copy(os.path.join(built.library_dirs.a, "libnixldtest.so"), tmp / "libnixldtest.so")
    return BadInput(library, environment(), nixld.NotExecutable, 126, (library,))


def _with_loader(tmp: Path, built, loader: str, *culprits: str) -> BadInput:
    return BadInput(built.probe, environment(NIX_LD=loader), nixld.LoaderError, 126, (loader, *culprits))


def _missing_default_loader(tmp, built) -> BadInput:
    assert not os.path.exists(DEFAULT_LOADER)
    return BadInput(built.probe, environment(NIX_LD=None), nixld.LoaderError, 126, (DEFAULT_LOADER,))


def _libm(tmp, built) -> BadInput:
    assert os.path.isfile(LIBM)
    return _with_loader(tmp, built, LIBM)


def _executable_libm(tmp, built) -> BadInput:
    # Executable, so that only its missing entry point tells it from a loader.
    return _with_loader(tmp, built, _copy(LIBM, tmp / "libm.so.6"), "not an ELF program loader")


BAD_INPUTS = {
    "missing program": lambda tmp, built: BadInput(
        str(tmp / "no-such-program"), environment(), nixld.ProgramNotFound, 127, (str(tmp / "no-such-program"),)),
    "name not on PATH": lambda tmp, built: BadInput(
        "nixld-no-such-command", environment(PATH=str(tmp)), nixld.ProgramNotFound, 127, ("nixld-no-such-command",)),
    "a directory": lambda tmp, built: BadInput(
        str(tmp), environment(), nixld.NotExecutable, 126, (str(tmp),)),
    "no execute permission": lambda tmp, built: BadInput(
        _copy(built.probe, tmp / "not-executable", 0o644), environment(), nixld.NotExecutable, 126,
        (str(tmp / "not-executable"),)),
    "not ELF and not a script": lambda tmp, built: BadInput(
        _text_file(tmp / "text"), environment(), nixld.NotExecutable, 126, (str(tmp / "text"),)),
    "ELF cut to 30 bytes": lambda tmp, built: BadInput(
        _truncated(built.probe, tmp / "cut-30", 30), environment(), nixld.NotExecutable, 126,
        (str(tmp / "cut-30"), "truncated")),
    "ELF cut to 100 bytes": lambda tmp, built: BadInput(
        _truncated(built.probe, tmp / "cut-100", 100), environment(), nixld.NotExecutable, 126,
        (str(tmp / "cut-100"), "truncated")),
    "ELF cut in half": lambda tmp, built: BadInput(
        _truncated(built.probe, tmp / "cut-half", os.path.getsize(built.probe) // 2), environment(),
        nixld.NotExecutable, 126, (str(tmp / "cut-half"), "truncated", "loadable segment")),
    "program headers of zeros": lambda tmp, built: BadInput(
        overwrite_program_headers(built.probe, tmp / "zeros", 0), environment(), nixld.NotExecutable, 126,
        (str(tmp / "zeros"), "corrupt", "no loadable segment")),
    "program headers of 0xff bytes": lambda tmp, built: BadInput(
        overwrite_program_headers(built.probe, tmp / "ones", 0xFF), environment(), nixld.NotExecutable, 126,
        (str(tmp / "ones"), "corrupt", "no loadable segment")),
    "program of another architecture": lambda tmp, built: BadInput(
        _patch_machine(built.probe, tmp / "aarch64-program"), environment(), nixld.ArchitectureMismatch, 126,
        (str(tmp / "aarch64-program"), "aarch64", "x86_64")),
    "a shared library": _shared_library,
    "loader missing": _missing_default_loader,
    "loader named by NIX_LD missing": lambda tmp, built: _with_loader(tmp, built, str(tmp / "no-such-ld.so")),
    "loader is /etc/passwd": lambda tmp, built: _with_loader(tmp, built, "/etc/passwd"),
    "loader is libm.so.6": _libm,
    "loader is an executable copy of libm.so.6": _executable_libm,
    "loader is a directory": lambda tmp, built: _with_loader(tmp, built, str(tmp)),
    "loader not executable": lambda tmp, built: _with_loader(
        tmp, built, _copy(REAL_LOADER, tmp / "ld-noexec.so", 0o644)),
    "loader of another architecture": lambda tmp, built: _with_loader(
        tmp, built, _patch_machine(REAL_LOADER, tmp / "ld-aarch64.so"), "aarch64", "x86_64"),
    "loader is a static program": lambda tmp, built: _with_loader(
        tmp, built, built.static_probe, "statically linked program", "NIX_LD"),
    "loader is a static-pie program": lambda tmp, built: _with_loader(
        tmp, built, built.static_pie_probe, "static-pie program", "NIX_LD"),
    "loader with its program headers overwritten": lambda tmp, built: _with_loader(
        tmp, built, overwrite_program_headers(REAL_LOADER, tmp / "ld-zeros.so", 0), "no loadable segment"),
    "loader named by NIX_LD_x86_64_linux missing": lambda tmp, built: BadInput(
        built.probe, environment(NIX_LD_x86_64_linux=str(tmp / "no-ld.so")), nixld.LoaderError, 126,
        (str(tmp / "no-ld.so"), "set NIX_LD_x86_64_linux to the path of an x86_64 loader")),
    "loader named by nix-ld 1.x's NIX_LD_x86_64-linux missing": lambda tmp, built: BadInput(
        built.probe, environment(**{"NIX_LD_x86_64-linux": str(tmp / "no-ld.so")}), nixld.LoaderError, 126,
        (f"loader {tmp / 'no-ld.so'} (from NIX_LD_x86_64-linux)",
         "set NIX_LD_x86_64-linux to the path of an x86_64 loader")),
}


@pytest.fixture(params=BAD_INPUTS)
def bad_input(request, tmp_path, built) -> BadInput:
    return BAD_INPUTS[request.param](tmp_path, built)


def test_a_bad_input_is_refused_with_one_line_naming_the_culprit(launch, bad_input, tmp_path):
    target = tmp_path / "created"
    result = launch(bad_input.program, "touch", str(target), env=bad_input.env)
    assert result.returncode == bad_input.status
    assert_one_nixld_line(result.stderr, *bad_input.culprits)
    expected_stdout = lines(bad_input.error.__name__) if launch.name == "exec_foreign" else b""
    assert result.stdout == expected_stdout
    assert not target.exists()


# Opening a FIFO for reading waits for a writer: a launch that opens the loader so never ends.
AT_ONCE = 10


@pytest.mark.parametrize("setting, advice", [
    ("NIX_LD", "set NIX_LD to the path"),
    ("NIX_LD_x86_64_linux", "set NIX_LD_x86_64_linux to the path"),
    ("--ld", "give --ld the path"),
])
def test_a_fifo_as_the_loader_is_refused_at_once_as_not_a_regular_file(launch, probe, tmp_path, setting, advice):
    """The kernel refuses an interpreter that is not a regular file at once; so does nixld."""
    fifo = tmp_path / "ld.so"
    os.mkfifo(fifo)
    target = tmp_path / "created"
    ld = str(fifo) if setting == "--ld" else None
    env = environment() if ld else environment(**{setting: str(fifo)})
    result = subprocess.run(launch.command(probe, "touch", str(target), ld=ld), env=env, capture_output=True,
                            timeout=AT_ONCE)
    assert result.returncode == 126
    source = "given with --ld" if ld else f"from {setting}"
    assert_one_nixld_line(result.stderr, f"loader {fifo} ({source}) is not a regular file: {advice}")
    assert not target.exists()


def attempt(call, bad_input: BadInput, target: Path):
    """Ask `call` to launch the bad input (a command that would create `target`)."""
    argv = [bad_input.program, "touch", str(target)]
    if call is nixld.plan_launch:
        return call(bad_input.program, argv=argv, env=bad_input.env)
    started = call(bad_input.program, argv=argv, env=bad_input.env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if isinstance(started, subprocess.Popen):  # it should have been refused; reap it anyway
        started.wait(timeout=TIMEOUT)
    return started


@pytest.mark.parametrize("call", [nixld.plan_launch, nixld.run_foreign, nixld.spawn_foreign],
                         ids=lambda call: call.__name__)
def test_the_api_raises_the_matching_launch_error_before_starting_anything(bad_input, call, tmp_path):
    target = tmp_path / "created"
    with pytest.raises(nixld.LaunchError) as raised:
        attempt(call, bad_input, target)
    assert type(raised.value) is bad_input.error
    assert raised.value.exit_status == bad_input.status
    assert "\n" not in raised.value.message
    for culprit in bad_input.culprits:
        assert culprit in raised.value.message
    assert not target.exists()


def test_an_undecodable_program_name_is_shown_with_escapes(cli, tmp_path):
    missing = os.fsencode(tmp_path) + b"/\xff-missing"
    result = subprocess.run([*cli, "run", missing], env=environment(), capture_output=True, timeout=TIMEOUT)
    assert result.returncode == 127
    assert_one_nixld_line(result.stderr, "\\xff-missing")


@pytest.mark.parametrize(
    "args, culprit",
    [
        (["--bogus", "{probe}"], "--bogus"),
        (["-x", "{probe}"], "-x"),
        ([], "PROGRAM"),
        (["--dry-run"], "PROGRAM"),
        (["-L", "/tmp"], "PROGRAM"),
        (["--"], "PROGRAM"),
        (["-L"], "-L"),
        (["--library-path"], "--library-path"),
        (["--ld"], "--ld"),
        (["--argv0"], "--argv0"),
        (["--ld=", "{probe}"], "--ld"),
    ],
)
def test_a_usage_error_exits_2_with_one_line(cli, probe, args, culprit):
    result = run_cli(cli, "run", *(arg.format(probe=probe) for arg in args))
    assert result.returncode == 2
    assert result.stdout == b""
    assert_one_nixld_line(result.stderr, culprit)


@pytest.mark.parametrize("args", [[], ["frobnicate"]])
def test_a_missing_or_unknown_command_is_a_usage_error(cli, args):
    result = run_cli(cli, *args)
    assert result.returncode == 2
    assert_one_nixld_line(result.stderr, *args)
