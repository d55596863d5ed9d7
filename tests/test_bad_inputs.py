"""Every bad input a user can give ends in one line that names what is at fault, with the status
a shell would give: 127 when the program is not found, 126 when it is found but cannot be
executed (its loader missing or unusable included), 2 for a usage error, 1 when the output cannot
be written. The same fact gets the same verdict from every command that meets it.

The table is run once, its commands side by side (each is a process of its own: the CLI reads
its caller's environment from /proc/self/environ); each case is then a test of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from crafted import EM_AARCH64, write_elf

REAL_LOADER = b"/lib64/ld-linux-x86-64.so.2"
FILE_COMMANDS = ["run", "inspect", "doctor", "find-libs", "wrap", "python-hook"]


def make_files(root: Path) -> None:
    """The files of the table, by name (a name that stays missing is listed too)."""
    (root / "directory").mkdir()
    os.mkfifo(root / "fifo")
    (root / "empty").write_bytes(b"")
    (root / "text").write_text("hello\n")
    (root / "script-without-interpreter").write_text("#!/no/such/interpreter\n")
    (root / "truncated").write_bytes(b"\x7fELF\x02\x01\x01")
    (root / "dangling").symlink_to("/no/such/target")
    write_elf(root / "aarch64-program", machine=EM_AARCH64)
    shutil.copy("/bin/true", root / "not-executable")
    for name in ("empty", "text", "script-without-interpreter", "truncated"):
        os.chmod(root / name, 0o755)
    os.chmod(root / "not-executable", 0o644)


# What each file is, and what each command answers: the status, or "report" where the command
# reports on it as it would on any program (it reads the file; it does not execute it), or
# ("report", status) where it reports and then gives the status `nixld run` would refuse it with.
FILES = {
    "missing": dict.fromkeys(FILE_COMMANDS, 127),
    b"missing-\xff\xfe".decode(errors="surrogateescape"): dict.fromkeys(FILE_COMMANDS, 127),
    "dangling": dict.fromkeys(FILE_COMMANDS, 127),
    "directory": dict.fromkeys(FILE_COMMANDS, 126),
    "fifo": dict.fromkeys(FILE_COMMANDS, 126),
    "empty": dict.fromkeys(FILE_COMMANDS, 126),
    "text": dict.fromkeys(FILE_COMMANDS, 126),
    "truncated": dict.fromkeys(FILE_COMMANDS, 126),
    # What runs a script runs its interpreter: not found is 127, as in a shell; the commands
    # that read ELF files say it is a script, which they cannot read.
    "script-without-interpreter": {"run": 127, "wrap": 127, "inspect": 126, "doctor": 126, "find-libs": 126,
                                   "python-hook": 127},
    "aarch64-program": {"run": 126, "wrap": 126, "inspect": ("report", 126), "doctor": "report",
                        "find-libs": "report", "python-hook": 126},
    "not-executable": {"run": 126, "wrap": 126, "doctor": 126, "inspect": "report", "find-libs": "report",
                       "python-hook": 126},
}

# NIX_LD values that name no usable loader: `nixld run` refuses each with 126, and so does
# every command that answers whether a launch would work (doctor says it as a problem: 1).
BAD_LOADERS = {
    "missing": lambda root: root / "no-such-ld.so",
    "relative": lambda root: Path("relative/ld.so"),
    "directory": lambda root: root / "directory",
    "fifo": lambda root: root / "fifo",
    "text": lambda root: root / "text",
    "a-program": lambda root: Path("/bin/true"),
    "another-machine": lambda root: root / "aarch64-program",
}
LOADER_VERDICTS = {"run": 126, "inspect": 126, "wrap": 126, "doctor": 1}

USAGE_ERRORS = {
    "run": [[], ["-L"], ["-L", "", "/bin/true"], ["--ld"], ["--bogus", "/bin/true"], ["--argv0"]],
    "inspect": [[], ["--ld", "", "/bin/true"], ["-L", "", "/bin/true"], ["--json", "--tree", "/bin/true"],
                ["--bogus", "/bin/true"]],
    "find-libs": [[], ["--search", "", "/bin/true"], ["--bogus", "/bin/true"], ["/bin/true", "/bin/true"]],
    "wrap": [[], ["--format", "bogus", "/bin/true"], ["--ld", "", "/bin/true"], ["-o", "", "/bin/true"],
             ["-L", "", "/bin/true"]],
    "doctor": [["a", "b"], [""], ["--bogus"], ["--python"], ["--python", ""]],
    "shim": [[], ["--path", "--system", "bogus"], ["--bogus"]],
    "demo": [["extra"]],
    "python-hook": [[], ["bogus"], ["status", "--python"], ["status", "--python", ""], ["install", "extra"]],
    "no-such-command": [[]],
}


def command_line(command: str, args: list[str], root: Path) -> list[str]:
    if command == "wrap":  # where it would write, were the program good
        args = ["-o", str(root / "wrapper"), "--force", *args]
    if command == "python-hook":  # the file is the Python it is asked about
        args = ["status", "--python", *args]
    return [sys.executable, "-m", "nixld", command, *args]


def cases(root: Path) -> dict[str, tuple[list[str], dict]]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("NIX_LD", "LD_LIBRARY"))}
    env["NIX_LD"] = os.fsdecode(REAL_LOADER)
    table = {}
    for name in FILES:
        for command in FILE_COMMANDS:
            table[f"file-{name}-{command}"] = (command_line(command, [f"./{name}"], root), env)
    for name, where in BAD_LOADERS.items():
        for command in LOADER_VERDICTS:
            table[f"loader-{name}-{command}"] = (command_line(command, ["/bin/true"], root),
                                                 dict(env, NIX_LD=os.fsdecode(os.fsencode(where(root)))))
    for command, argument_lists in USAGE_ERRORS.items():
        for index, args in enumerate(argument_lists):
            table[f"usage-{command}-{index}"] = ([sys.executable, "-m", "nixld", command, *args], env)
    return table


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-inputs")
    make_files(root)
    table = cases(root)

    def run(item):
        name, (argv, env) = item
        result = subprocess.run(argv, cwd=root, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=60)
        return name, result

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(run, table.items()))


def assert_one_line(result, *naming: bytes) -> None:
    """stderr is one line of nixld's that names each of `naming`; stdout says nothing."""
    assert result.stderr.startswith(b"nixld: ") and result.stderr.count(b"\n") == 1, result.stderr
    assert b"Traceback" not in result.stderr
    for name in naming:
        assert name in result.stderr, (name, result.stderr)


FILE_CASES = [(name, command, verdict) for name, verdicts in FILES.items() for command, verdict in verdicts.items()]


@pytest.mark.parametrize(("name", "command", "verdict"), FILE_CASES,
                         ids=[f"{os.fsencode(n).decode(errors='replace')}-{c}" for n, c, _ in FILE_CASES])
def test_a_bad_program_file_gets_the_shells_status_and_one_line_naming_it(outcomes, name, command, verdict):
    result = outcomes[f"file-{name}-{command}"]
    shown = os.fsencode(name).decode(errors="backslashreplace").encode()
    if verdict == "report":
        assert result.returncode in (0, 1) and shown in result.stdout and b"Traceback" not in result.stderr
        return
    if isinstance(verdict, tuple):
        assert result.returncode == verdict[1] and shown in result.stdout
        assert_one_line(result, shown)
        return
    assert result.returncode == verdict, result.stderr
    assert_one_line(result, shown)
    assert result.stdout == b""


@pytest.mark.parametrize("command", sorted(LOADER_VERDICTS))
@pytest.mark.parametrize("name", sorted(BAD_LOADERS))
def test_a_loader_that_cannot_start_the_program_gets_one_verdict_from_every_command(outcomes, name, command,
                                                                                    tmp_path):
    result = outcomes[f"loader-{name}-{command}"]
    assert result.returncode == LOADER_VERDICTS[command], result.stderr
    assert b"Traceback" not in result.stderr
    where = os.fsencode(BAD_LOADERS[name](Path("."))).rsplit(b"/", 1)[-1]
    if command == "doctor":  # the verdict is a problem of its report, naming the loader and NIX_LD
        assert b"problem: " in result.stdout and b"NIX_LD" in result.stdout and where in result.stdout
    elif command == "inspect":  # its report is printed, and the reason, once, on stderr
        assert where in result.stdout
        assert result.stderr.count(b"\n") == 1 and b"NIX_LD" in result.stderr and where in result.stderr
    else:
        assert_one_line(result, b"NIX_LD", where)


USAGE_CASES = [(command, index) for command, lists in USAGE_ERRORS.items() for index in range(len(lists))]


@pytest.mark.parametrize(("command", "index"), USAGE_CASES,
                         ids=[f"{c}-{' '.join(USAGE_ERRORS[c][i]) or 'nothing'}" for c, i in USAGE_CASES])
def test_a_usage_error_is_one_line_pointing_at_the_commands_help(outcomes, command, index):
    result = outcomes[f"usage-{command}-{index}"]
    assert result.returncode == 2, result.stderr
    topic = b"nixld --help" if command == "no-such-command" else f"nixld {command} --help".encode()
    assert_one_line(result, b"see '" + topic + b"'")
    assert result.stdout == b""

