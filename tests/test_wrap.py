"""`nixld wrap`: a file that starts one foreign program for good. `sh` (a script whose only
command is the loader's exec) and `binary` (a copy of nixld's compiled launcher) start it
exactly as `nixld run` would, with no Python at run time; `nix` and `envrc` set NIX_LD and
NIX_LD_LIBRARY_PATH for a program started by nix-ld or nixld's shim."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FOREIGN, GREETINGS, I386_LOADER, PROGRAMS, compile_all, require, why_gcc_cannot_build_32_bit
from crafted import write_loader
from environments import NIX_LD_TABLE, explicit_environment
from hypothesis import given, settings
from hypothesis import strategies as st

from nixld import shims, wrap

REAL_LOADER = "/lib64/ld-linux-x86-64.so.2"
MUSL_LOADER = "/lib/ld-musl-x86_64.so.1"
DEFAULT_LIBRARY_DIR = "/run/current-system/sw/share/nix-ld/lib"
TIMEOUT = 30
# Opening a FIFO for reading waits for a writer: a wrap that opens the loader so never ends.
AT_ONCE = 10


def environment(**variables) -> dict:
    return explicit_environment(REAL_LOADER, **variables)


def lines(*items) -> bytes:
    return b"".join(os.fsencode(item) + b"\n" for item in items)


def nixld_wrap(nixld_script, *args, env=None, cwd=None, fmt="binary", timeout=TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([nixld_script, "wrap", "--format", fmt, *args], env=env or environment(),
                          capture_output=True, timeout=timeout, cwd=cwd)


def run(*argv, env=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([os.fsencode(arg) for arg in argv], env=env or environment(), capture_output=True,
                          timeout=TIMEOUT, **kwargs)


@pytest.fixture(params=["sh", "binary"])
def launcher_format(request) -> str:
    """The formats that start the program through the loader, as nixld run does."""
    return request.param


@pytest.fixture
def wrapped_probe(nixld_script, probe, tmp_path, launcher_format) -> str:
    output = tmp_path / "wrapped-probe"
    result = nixld_wrap(nixld_script, "-o", str(output), probe, fmt=launcher_format)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == f"{output}: starts {probe} through {REAL_LOADER} with library path " \
                            f"{DEFAULT_LIBRARY_DIR}\n".encode()
    return str(output)


def test_the_wrapper_runs_the_program_with_its_arguments(wrapped_probe):
    result = run(wrapped_probe, "argv", "one", "two words", "")
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(wrapped_probe, "argv", "one", "two words", "")


def test_the_program_sees_the_wrappers_argv0_unless_one_was_fixed(nixld_script, probe, tmp_path, launcher_format):
    default, fixed = tmp_path / "default", tmp_path / "fixed"
    assert nixld_wrap(nixld_script, "-o", str(default), probe, fmt=launcher_format).returncode == 0
    assert nixld_wrap(nixld_script, "-o", str(fixed), "--argv0", "chosen", probe, fmt=launcher_format).returncode == 0
    result = subprocess.run([b"called-as", b"argv"], executable=default, env=environment(), capture_output=True)
    # A #! script's $0 is the path the kernel found it at: the name it was called by is gone.
    assert result.stdout == lines("called-as" if launcher_format == "binary" else str(default), "argv")
    assert run(fixed, "argv").stdout == lines("chosen", "argv")


def test_libraries_come_from_the_directories_fixed_at_wrap_time(nixld_script, uses_library, library_dirs, tmp_path, launcher_format):
    output = tmp_path / "wrapped"
    assert nixld_wrap(nixld_script, "-o", str(output), "-L", library_dirs.b, uses_library, fmt=launcher_format).returncode == 0
    result = run(output, env=environment(NIX_LD_LIBRARY_PATH=library_dirs.a))  # at run time: not read
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(GREETINGS["lib-b"]))


def test_the_nix_ld_directories_at_wrap_time_are_fixed_too(nixld_script, uses_library, library_dirs, tmp_path, launcher_format):
    output = tmp_path / "wrapped"
    result = nixld_wrap(nixld_script, "-o", str(output), uses_library,
                        env=environment(NIX_LD_LIBRARY_PATH=library_dirs.a, LD_LIBRARY_PATH=library_dirs.b), fmt=launcher_format)
    assert result.returncode == 0
    assert result.stdout.endswith(f"with library path {library_dirs.a}\n".encode())  # not the caller's
    assert run(output).stdout == lines(GREETINGS["lib-a"])


def test_the_callers_ld_library_path_at_run_time_comes_first_as_with_nixld_run(nixld_script, uses_library,
                                                                               library_dirs, tmp_path, launcher_format):
    output = tmp_path / "wrapped"
    assert nixld_wrap(nixld_script, "-o", str(output), "-L", library_dirs.a, uses_library, fmt=launcher_format).returncode == 0
    env = environment(LD_LIBRARY_PATH=f":{library_dirs.b};")
    assert run(output, env=env).stdout == lines(GREETINGS["lib-b"])
    assert run(nixld_script, "run", "-L", library_dirs.a, uses_library, env=env).stdout == lines(GREETINGS["lib-b"])


@pytest.mark.parametrize("row", NIX_LD_TABLE)
def test_the_program_and_its_children_see_exactly_the_callers_library_variables(wrapped_probe, native_probe, row):
    env = environment(**NIX_LD_TABLE[row])
    result = run(wrapped_probe, "env", native_probe, "env", env=env)
    assert (result.returncode, result.stderr) == (0, b"")
    seen = lines(*(f"{name}={env[name]}" if name in env else f"{name} unset"
                   for name in ("LD_LIBRARY_PATH", "NIX_LD_LIBRARY_PATH")))
    assert result.stdout == seen + seen


def environ_through(program, entries: list[bytes]) -> bytes:
    """What `program environ` prints when exec'd with exactly `entries` (nixld's C core passes
    entries as they are: repeated names, entries without "=")."""
    code = ("import sys, ast\nfrom nixld._execve import execve\n"
            "execve(sys.argv[1].encode(), [sys.argv[1].encode(), b'environ'], ast.literal_eval(sys.argv[2]))")
    result = subprocess.run([sys.executable, "-c", code, os.fspath(program), repr(entries)], capture_output=True,
                            timeout=TIMEOUT)
    assert (result.returncode, result.stderr) == (0, b"")
    return result.stdout


ODD_BLOCK = [b"A=1", b"LD_LIBRARY_PATH=/x", b"A=2", b"NO_EQUALS", b"X=\xff"]


def test_the_binary_wrapper_passes_the_callers_environment_block_entry_for_entry(nixld_script, probe, tmp_path):
    output = tmp_path / "wrapped"
    assert nixld_wrap(nixld_script, "-o", str(output), probe).returncode == 0
    assert environ_through(output, ODD_BLOCK) == b"".join(entry + b"\0" for entry in ODD_BLOCK)


def test_the_sh_wrapper_passes_the_environment_as_any_sh_exec_line_does(nixld_script, probe, native_probe, tmp_path):
    """The shell itself keeps one entry per name, drops entries without "=" and adds PWD: what
    a hand-written `exec` line in a #!/bin/sh script gives a program is the measure."""
    output = tmp_path / "wrapped"
    assert nixld_wrap(nixld_script, "-o", str(output), probe, fmt="sh").returncode == 0
    by_hand = tmp_path / "by-hand"
    by_hand.write_text(f'#!/bin/sh\nexec {native_probe} "$@"\n')
    by_hand.chmod(0o755)
    assert environ_through(output, ODD_BLOCK) == environ_through(by_hand, ODD_BLOCK)


@pytest.mark.parametrize("status", [0, 3, 255])
def test_the_exit_status_is_the_programs(wrapped_probe, status):
    assert run(wrapped_probe, "exit", str(status)).returncode == status


def test_death_by_a_signal_is_the_programs(wrapped_probe):
    assert run(wrapped_probe, "kill", str(int(signal.SIGTERM))).returncode == -signal.SIGTERM


# Paths any byte but NUL and "/": spaces, quotes, $, backquotes, newlines, non-UTF-8.
awkward_names = st.binary(min_size=1, max_size=24).filter(
    lambda name: b"\0" not in name and b"/" not in name and name not in (b".", b".."))


@pytest.mark.parametrize("launcher_format", ["sh", "binary"])
@settings(max_examples=25)
@given(name=awkward_names)
def test_any_program_path_survives_the_wrapper(nixld_script, probe, tmp_path_factory, name, launcher_format):
    directory = tmp_path_factory.mktemp("awkward")
    program = os.fsencode(directory) + b"/" + name
    shutil.copy(probe, program)
    output = os.fsencode(directory) + b"/wrapped " + name
    result = nixld_wrap(nixld_script, "-o", output, b"--", program, fmt=launcher_format)
    assert (result.returncode, result.stderr) == (0, b"")
    result = run(output, "argv", "$HOME `x` 'y' \"z\"\n")
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == output + b"\nargv\n$HOME `x` 'y' \"z\"\n\n"


# ---------------------------------------------------------------------------------------------
# Set-user-ID and set-group-ID programs: the wrapper is a new file, without their bits


def set_id_copy(probe, tmp_path: Path, mode: int) -> Path:
    """A copy of the probe with `mode`'s set-user-ID and set-group-ID bits (no root needed)."""
    program = tmp_path / "set-id-probe"
    shutil.copy(probe, program)
    os.chmod(program, mode)
    return program


def wrapped_with_a_warning(nixld_script, program: Path, output: Path, fmt: str) -> str:
    """Wrap `program` in `fmt`: written as ever, status 0, and one `nixld: warn:` line, returned."""
    result = nixld_wrap(nixld_script, "-o", str(output), str(program), fmt=fmt)
    assert (result.returncode, output.exists()) == (0, True)
    assert result.stdout.startswith(f"{output}: starts {program} through ".encode())
    assert result.stderr.startswith(b"nixld: warn: ") and result.stderr.count(b"\n") == 1, result.stderr
    assert not output.stat().st_mode & (stat.S_ISUID | stat.S_ISGID)
    return result.stderr.decode()


def test_a_binary_wrapper_of_a_set_user_id_program_warns_and_says_how_to_give_it_the_bit(nixld_script, probe,
                                                                                         tmp_path):
    program, output = set_id_copy(probe, tmp_path, 0o4755), tmp_path / "wrapped"
    owner = pwd.getpwuid(os.getuid()).pw_name
    assert wrapped_with_a_warning(nixld_script, program, output, "binary") == (
        f"nixld: warn: {output} does not carry the set-user-ID bit of {program}, so the program runs with its "
        f"caller's privileges, not its owner's: to give it those, run `chown {owner} {output} && chmod u+s "
        f"{output}` (so started, the launcher uses only the library directories fixed now, not its caller's "
        "LD_LIBRARY_PATH)\n")


@pytest.mark.parametrize("mode, command", [
    (0o2755, "`chgrp {group} {output} && chmod g+s {output}`"),
    (0o6755, "`chown {owner}:{group} {output} && chmod u+s,g+s {output}`"),
])
def test_a_binary_wrapper_of_a_set_group_id_program_is_told_the_group_and_the_bits_to_give(nixld_script, probe,
                                                                                           tmp_path, mode, command):
    program, output = set_id_copy(probe, tmp_path, mode), tmp_path / "wrapped"
    names = {"owner": pwd.getpwuid(os.getuid()).pw_name, "group": grp.getgrgid(os.getgid()).gr_name}
    assert command.format(output=output, **names) in wrapped_with_a_warning(nixld_script, program, output, "binary")


# nix and envrc leave the program to start by itself, with its own bit: in secure mode.
IN_SECURE_MODE = ("{program} is set-user-ID, so it starts in secure mode, where the library directories {output} "
                  "sets in NIX_LD_LIBRARY_PATH are not used: use --format binary")


@pytest.mark.parametrize("fmt, warning", [
    ("sh", "{output} is a script and Linux ignores set-user-ID on scripts, so through it {program} runs with its "
           "caller's privileges, not its owner's: use --format binary"),
    ("nix", IN_SECURE_MODE),
    ("envrc", IN_SECURE_MODE),
])
def test_a_script_format_for_a_set_user_id_program_warns_to_use_the_binary_format(nixld_script, probe, tmp_path,
                                                                                   fmt, warning):
    program, output = set_id_copy(probe, tmp_path, 0o4755), tmp_path / "wrapped"
    assert wrapped_with_a_warning(nixld_script, program, output, fmt) == (
        "nixld: warn: " + warning.format(output=output, program=program) + "\n")


# ---------------------------------------------------------------------------------------------
# What wrap refuses, and what it never leaves behind


def leftovers(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith(".nixld-wrap-"))


def test_an_existing_file_is_replaced_only_with_force(nixld_script, probe, tmp_path, launcher_format):
    output = tmp_path / "out"
    output.write_text("precious")
    result = nixld_wrap(nixld_script, "-o", str(output), probe, fmt=launcher_format)
    assert result.returncode == 1
    assert result.stderr == f"nixld: {output} exists: give --force to replace it\n".encode()
    assert output.read_text() == "precious"
    assert nixld_wrap(nixld_script, "--force", "-o", str(output), probe, fmt=launcher_format).returncode == 0
    assert run(output, "exit", "7").returncode == 7
    assert leftovers(tmp_path) == []


def test_the_default_output_is_the_programs_name_here_and_never_the_program_itself(nixld_script, probe, tmp_path):
    result = nixld_wrap(nixld_script, probe, cwd=tmp_path)
    assert result.returncode == 0
    assert run(tmp_path / os.path.basename(probe), "exit", "4").returncode == 4
    result = nixld_wrap(nixld_script, "--force", probe, cwd=os.path.dirname(probe))
    assert result.returncode == 1
    assert b"is the program itself" in result.stderr


def test_an_output_in_a_missing_directory_is_one_line_and_leaves_nothing(nixld_script, probe, tmp_path):
    result = nixld_wrap(nixld_script, "-o", str(tmp_path / "no" / "such" / "out"), probe)
    assert result.returncode == 1
    assert result.stderr.startswith(b"nixld: cannot write ") and result.stderr.count(b"\n") == 1
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("which, fault", [("static_probe", "needs no wrapper"),
                                          ("native_probe", None)])
def test_a_program_that_needs_no_wrapper_is_refused_and_a_native_one_is_not(nixld_script, request, tmp_path, which,
                                                                              fault):
    program = request.getfixturevalue(which)
    result = nixld_wrap(nixld_script, "-o", str(tmp_path / "out"), program)
    if fault is None:
        assert result.returncode == 0
    else:
        assert result.returncode == 126 and fault.encode() in result.stderr
        assert not (tmp_path / "out").exists()


def test_a_loader_without_library_path_option_cannot_be_wrapped(nixld_script, probe, tmp_path):
    loader = tmp_path / "old-ld.so"
    write_loader(loader, options=(b"--argv0",))
    result = nixld_wrap(nixld_script, "-o", str(tmp_path / "out"), "--ld", str(loader), probe)
    assert result.returncode == 126
    assert b"has no --library-path option, which a wrapper needs" in result.stderr


def test_wrap_refuses_what_nixld_run_refuses(nixld_script, tmp_path):
    result = nixld_wrap(nixld_script, "-o", str(tmp_path / "out"), str(tmp_path / "absent"))
    assert result.returncode == 127 and result.stderr.count(b"\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("setting", ["NIX_LD", "--ld"])
def test_a_fifo_as_the_loader_is_refused_at_once_as_nixld_run_refuses_it(nixld_script, probe, tmp_path, setting):
    """Opening a FIFO for reading waits for a writer; the kernel refuses such an interpreter
    at once, and so does wrap."""
    fifo = tmp_path / "ld.so"
    os.mkfifo(fifo)
    output = tmp_path / "out"
    if setting == "--ld":
        result = nixld_wrap(nixld_script, "-o", str(output), "--ld", str(fifo), probe, timeout=AT_ONCE)
        source, advice = "given with --ld", "give --ld the path"
    else:
        result = nixld_wrap(nixld_script, "-o", str(output), probe, env=environment(NIX_LD=str(fifo)), timeout=AT_ONCE)
        source, advice = "from NIX_LD", "set NIX_LD to the path"
    assert (result.returncode, result.stdout) == (126, b"")
    assert result.stderr == (f"nixld: loader {fifo} ({source}) is not a regular file: {advice} of an x86_64 loader "
                             "(glibc's ld.so)\n").encode()
    assert not output.exists()


def test_a_wrapper_whose_loader_is_gone_says_so_in_one_line(nixld_script, probe, tmp_path, launcher_format):
    loader = tmp_path / "ld.so"
    shutil.copy(REAL_LOADER, loader)
    output = tmp_path / "out"
    assert nixld_wrap(nixld_script, "-o", str(output), "--ld", str(loader), probe, fmt=launcher_format).returncode == 0
    loader.unlink()
    result = run(output, "exit", "0")
    if launcher_format == "binary":  # the program exists but cannot be executed
        assert result.returncode == 126
        assert result.stderr == f"nixld launcher: {probe}: its loader {loader} does not exist\n".encode()
    else:  # the shell's own status and words
        assert result.returncode == 127
        assert result.stderr.count(b"\n") == 1 and str(loader).encode() in result.stderr


def test_the_launcher_as_installed_has_no_settings_and_says_so():
    result = run(shims.launcher_path())
    assert result.returncode == 126
    assert b"this launcher has no settings: make one with `nixld wrap --format binary PROGRAM`" in result.stderr


def test_settings_too_long_for_the_launcher_are_refused():
    with pytest.raises(wrap.WrapError, match="the launcher holds 32768"):
        wrap.launcher_bytes(wrap.WrapSettings(b"/ld.so", (b"/d" * 100,) * 200, b"/p", None, True))


def test_proc_self_exe_is_the_binary_wrapper_so_a_program_that_re_executes_itself_works(nixld_script, probe,
                                                                                          tmp_path):
    """The launcher maps the loader itself rather than exec'ing it, so the process image stays
    the wrapper: re-executing /proc/self/exe starts the wrapper, hence the program, again.
    (Through the sh format, as through nixld run, the process is the loader.)"""
    wrapped_probe = str(tmp_path / "wrapped")
    assert nixld_wrap(nixld_script, "-o", wrapped_probe, probe).returncode == 0
    assert run(wrapped_probe, "exe").stdout == lines(wrapped_probe)
    result = run(wrapped_probe, "reexec", "argv", "again")
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(wrapped_probe, "argv", "again"))


@pytest.mark.parametrize("check, says", [("start", b"start ok\n"), ("auxv", b"auxv ok\n"), ("fds", b"")])
def test_the_program_starts_on_a_stack_laid_out_as_the_kernel_lays_one_out(wrapped_probe, check, says):
    """Aligned, with the kernel's auxv pair for pair, and no file of the launcher's left open."""
    result = run(wrapped_probe, check, env=environment(LD_LIBRARY_PATH="/x"))
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", says)


def test_a_musl_program_wrapped_with_musls_loader_runs(nixld_script, tmp_path):
    require(shutil.which("musl-gcc") is not None and os.path.exists(MUSL_LOADER), "musl's compiler and loader",
            package="musl-tools")
    program = tmp_path / "musl-probe"
    compile_all([["-o", str(program), str(PROGRAMS / "probe.c"), FOREIGN]], compiler=["musl-gcc"])
    output = tmp_path / "wrapped"
    assert nixld_wrap(nixld_script, "-o", str(output), "--ld", MUSL_LOADER, str(program)).returncode == 0
    result = run(output, "argv", "x", env=environment(LD_LIBRARY_PATH="/x"))
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(output, "argv", "x"))


def test_the_loader_and_directories_named_in_nix_ld_1_x_spellings_are_the_wrappers(nixld_script, probe, tmp_path):
    output = tmp_path / "wrapped"
    env = environment(NIX_LD="/nonexistent/ld.so", **{"NIX_LD_x86_64-linux": REAL_LOADER,
                                                       "NIX_LD_LIBRARY_PATH_x86_64-linux": str(tmp_path)})
    result = nixld_wrap(nixld_script, "-o", str(output), probe, env=env)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(f"{output}: starts {probe} through {REAL_LOADER} with library path {tmp_path}")


def test_an_i686_program_is_wrapped_and_its_loader_started_by_the_kernel(nixld_script, tmp_path, launcher_format):
    why = why_gcc_cannot_build_32_bit()
    require(why is None, f"gcc cannot build 32-bit programs ({why})", package="gcc-multilib")
    program = tmp_path / "probe32"
    compile_all([["-m32", "-o", str(program), str(PROGRAMS / "probe.c"), FOREIGN]])
    output = tmp_path / "wrapped"
    result = nixld_wrap(nixld_script, "-o", str(output), str(program),
                        env=environment(NIX_LD_i686_linux=I386_LOADER), fmt=launcher_format)
    assert (result.returncode, result.stderr) == (0, b"")
    result = run(output, "argv", "x")
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(output, "argv", "x"))


# ---------------------------------------------------------------------------------------------
# The sh script's shape; nix and envrc, for programs started by nix-ld or nixld's shim


def test_sh_is_the_default_format_and_the_script_is_one_exec_line(nixld_script, probe, tmp_path):
    output = tmp_path / "wrapped"
    result = subprocess.run([nixld_script, "wrap", "-o", str(output), probe], env=environment(), capture_output=True)
    assert result.returncode == 0
    shebang, command, rest = output.read_bytes().split(b"\n", 2)
    assert (shebang, rest) == (b"#!/bin/sh", b"")
    assert command.startswith(f"exec '{REAL_LOADER}' --library-path ".encode())
    assert command.endswith(f"--argv0 \"$0\" '{probe}' \"$@\"".encode())
    assert b"$(" not in command and b"`" not in command  # no subshells, no commands but the exec


@pytest.fixture(scope="module")
def shim_linked_probe(tmp_path_factory) -> str:
    """The probe with nixld's shim as its interpreter: what nix and envrc wrappers start."""
    program = tmp_path_factory.mktemp("shim-linked") / "odd 'name' $x `y`"
    compile_all([["-o", str(program), str(PROGRAMS / "probe.c"), f"-Wl,--dynamic-linker={shims.shim_path()}"]])
    return str(program)


def test_the_nix_expression_parses_and_its_script_starts_the_program_through_nix_ld(nixld_script, shim_linked_probe,
                                                                                   tmp_path):
    nix_instantiate = shutil.which("nix-instantiate")
    require(nix_instantiate is not None, "nix-instantiate", package="nix-bin")
    output = tmp_path / "tool.nix"
    assert nixld_wrap(nixld_script, "-o", str(output), shim_linked_probe, fmt="nix").returncode == 0
    parsed = subprocess.run([nix_instantiate, "--parse", str(output)], capture_output=True, timeout=TIMEOUT)
    assert parsed.returncode == 0, parsed.stderr
    fake_pkgs = "{ writeShellScriptBin = name: text: { inherit name text; }; }"
    evaluated = subprocess.run([nix_instantiate, "--eval", "--strict", "--json", "-E",
                                f"import {output} {{ pkgs = {fake_pkgs}; }}"], capture_output=True, timeout=TIMEOUT)
    assert evaluated.returncode == 0, evaluated.stderr
    command = json.loads(evaluated.stdout)
    assert command["name"] == "odd--name---x--y-"
    assert command["text"].startswith(f"export NIX_LD='{REAL_LOADER}'\nexport NIX_LD_LIBRARY_PATH='{DEFAULT_LIBRARY_DIR}'\n")
    result = run("/bin/sh", "-c", command["text"], "tool", "argv", "one two", env={"PATH": "/usr/bin:/bin"})
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(shim_linked_probe, "argv", "one two")
    result = run("/bin/sh", "-c", command["text"], "tool", "env", env={"PATH": "/usr/bin:/bin"})
    assert result.stdout == lines("LD_LIBRARY_PATH unset", f"NIX_LD_LIBRARY_PATH={DEFAULT_LIBRARY_DIR}")


def test_the_envrc_exports_nix_ld_and_its_library_path(nixld_script, shim_linked_probe, tmp_path):
    result = nixld_wrap(nixld_script, shim_linked_probe, fmt="envrc", cwd=tmp_path)
    assert result.returncode == 0
    envrc = tmp_path / ".envrc"
    assert oct(envrc.stat().st_mode & 0o777) == "0o644"
    loader, directories = REAL_LOADER, DEFAULT_LIBRARY_DIR  # as environment() gives them at wrap time
    script = 'set -e; . ./.envrc; printf "%s\\n" "$NIX_LD" "$NIX_LD_LIBRARY_PATH"; exec "$0" env'
    result = run("/bin/bash", "-c", script, shim_linked_probe, env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(loader, directories, "LD_LIBRARY_PATH unset", f"NIX_LD_LIBRARY_PATH={directories}")


def test_an_interrupted_write_leaves_neither_the_output_nor_a_temporary_file(tmp_path, monkeypatch):
    def interrupted(fd, mode):
        raise KeyboardInterrupt

    monkeypatch.setattr(wrap.os, "fchmod", interrupted)
    with pytest.raises(KeyboardInterrupt):
        wrap.write_atomically(os.fsencode(tmp_path / "out"), b"#!/bin/sh\n", force=False)
    assert os.listdir(tmp_path) == []
