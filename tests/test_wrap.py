"""`nixld wrap`: a file that starts one foreign program for good. `sh` (a script whose only
command is the loader's exec) and `binary` (a copy of nixld's compiled launcher) start it
exactly as `nixld run` would, with no Python at run time; `nix` and `envrc` set NIX_LD and
NIX_LD_LIBRARY_PATH for a program started by nix-ld or nixld's shim. Every path is read at
wrap time and written absolute. `--in-place` puts a sh or binary wrapper in the program's
own place, the program moved to `.NAME-wrapped` beside it, and `--undo` puts it back."""

from __future__ import annotations

import errno
import grp
import hashlib
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
from hypothesis import example, given, settings
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


def summary(fmt: str, output, program, loader=REAL_LOADER, directories=DEFAULT_LIBRARY_DIR) -> bytes:
    """The line wrap prints for what it wrote, true of each format: sh and binary start the
    program through the loader; nix and envrc only set what nix-ld or nixld's shim read."""
    if fmt == "nix":
        return (f"{output}: a command {os.path.basename(program)} that sets NIX_LD={loader} and "
                f"NIX_LD_LIBRARY_PATH={directories} and starts {program}, for nix-ld or nixld's shim at its "
                "interpreter path to hand to that loader\n").encode()
    if fmt == "envrc":
        return (f"{output}: sets NIX_LD={loader} and NIX_LD_LIBRARY_PATH={directories}, for nix-ld or nixld's "
                f"shim at the interpreter path of {program} to hand it to that loader\n").encode()
    return f"{output}: starts {program} through {loader} with library path {directories}\n".encode()


@pytest.fixture(params=["sh", "binary"])
def launcher_format(request) -> str:
    """The formats that start the program through the loader, as nixld run does."""
    return request.param


@pytest.fixture
def wrapped_probe(nixld_script, probe, tmp_path, launcher_format) -> str:
    output = tmp_path / "wrapped-probe"
    result = nixld_wrap(nixld_script, "-o", str(output), probe, fmt=launcher_format)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", summary(launcher_format, output, probe))
    return str(output)


def test_the_wrapper_runs_the_program_with_its_arguments(wrapped_probe):
    result = run(wrapped_probe, "argv", "one", "two words", "", "$HOME `x` 'y' \"z\"\n")
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(wrapped_probe, "argv", "one", "two words", "", "$HOME `x` 'y' \"z\"\n")


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
# A library directory cannot hold what the loader splits a library path on.
awkward_directory_names = awkward_names.filter(lambda name: b":" not in name and b";" not in name)
SH_SPECIAL = b" '\"$`\\\n;&|<>()*?[#~="


@pytest.mark.parametrize("launcher_format", ["sh", "binary"])
@settings(max_examples=20)
@given(program=awkward_names, loader=awkward_names, directory=awkward_directory_names, output=awkward_names)
@example(program=SH_SPECIAL, loader=SH_SPECIAL, directory=SH_SPECIAL.replace(b";", b""), output=SH_SPECIAL)
def test_any_program_loader_and_library_directory_survive_the_wrapper(nixld_script, uses_library, library_dirs,
                                                                        tmp_path_factory, program, loader, directory,
                                                                        output, launcher_format):
    """Whatever bytes the paths hold, the wrapper starts that program through that loader and
    it finds its library in that directory (the sh script run for real)."""
    root = os.fsencode(tmp_path_factory.mktemp("awkward"))
    for part in (b"program", b"loader", b"directory", b"output"):
        os.mkdir(root + b"/" + part)
    program, loader, directory, output = (root + b"/" + part + b"/" + name for part, name in (
        (b"program", program), (b"loader", loader), (b"directory", directory), (b"output", output)))
    shutil.copy(uses_library, program)
    shutil.copy(REAL_LOADER, loader)
    os.mkdir(directory)
    shutil.copy(os.path.join(library_dirs.b, "libnixldtest.so"), directory + b"/libnixldtest.so")
    result = nixld_wrap(nixld_script, "-o", output, "--ld", loader, "-L", directory, "--", program,
                        fmt=launcher_format)
    assert (result.returncode, result.stderr) == (0, b"")
    result = run(output)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(GREETINGS["lib-b"]))


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
    assert result.stdout == summary(fmt, output, program)
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


@pytest.mark.parametrize("fmt, name", [("sh", "probe"), ("binary", "probe"), ("nix", "probe.nix"),
                                       ("envrc", ".envrc")])
def test_an_existing_directory_as_output_receives_the_wrapper_under_its_default_name(nixld_script, probe, tmp_path,
                                                                                      fmt, name):
    """As cp and install read a directory: `-o DIR/` writes DIR/NAME."""
    result = nixld_wrap(nixld_script, "-o", f"{tmp_path}/", probe, fmt=fmt)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", summary(fmt, tmp_path / name, probe))
    assert os.listdir(tmp_path) == [name]


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_a_directory_where_the_wrapper_would_go_is_refused_and_force_is_not_suggested(nixld_script, probe, tmp_path,
                                                                                      force):
    (tmp_path / "probe").mkdir()
    result = nixld_wrap(nixld_script, *force, "-o", str(tmp_path), probe)
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr == f"nixld: {tmp_path}/probe is a directory: give -o another path\n".encode()
    assert os.listdir(tmp_path / "probe") == [] and leftovers(tmp_path) == []


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


def test_a_script_is_refused_with_the_interpreter_to_wrap_instead(nixld_script, tmp_path):
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    result = nixld_wrap(nixld_script, "-o", str(tmp_path / "out"), str(script))
    assert result.returncode == 126 and not (tmp_path / "out").exists()
    assert result.stderr == (f"nixld: {script} is a #! script, which `nixld run` starts through its interpreter "
                             "/bin/sh: wrap that interpreter instead\n").encode()


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


def nix_instantiate() -> str:
    path = shutil.which("nix-instantiate")
    require(path is not None, "nix-instantiate", package="nix-bin")
    return path


def nix_command(output) -> dict:
    """The nix format's expression at `output`, parsed, then evaluated with a stand-in for
    pkgs.writeShellScriptBin: {"name": ..., "text": ...}."""
    parsed = subprocess.run([nix_instantiate(), "--parse", str(output)], capture_output=True, timeout=TIMEOUT)
    assert parsed.returncode == 0, parsed.stderr
    fake_pkgs = "{ writeShellScriptBin = name: text: { inherit name text; }; }"
    evaluated = subprocess.run([nix_instantiate(), "--eval", "--strict", "--json", "--arg", "pkgs", fake_pkgs,
                                str(output)], capture_output=True, timeout=TIMEOUT)
    assert evaluated.returncode == 0, evaluated.stderr
    return json.loads(evaluated.stdout)


def test_the_nix_expression_parses_and_its_script_starts_the_program_through_nix_ld(nixld_script, shim_linked_probe,
                                                                                   tmp_path):
    output = tmp_path / "tool.nix"
    assert nixld_wrap(nixld_script, "-o", str(output), shim_linked_probe, fmt="nix").returncode == 0
    command = nix_command(output)
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


def test_the_python_api_takes_everything_but_the_program_by_keyword(probe, tmp_path):
    output, written, warning = wrap.wrap(os.fsencode(probe), output=os.fsencode(tmp_path / "out"),
                                         ld=REAL_LOADER.encode(), fmt="binary")
    assert (output, written.program, warning) == (os.fsencode(tmp_path / "out"), os.fsencode(probe), None)
    with pytest.raises(TypeError):
        wrap.wrap(os.fsencode(probe), os.fsencode(tmp_path / "other"))


# ---------------------------------------------------------------------------------------------
# Quoting: whatever the bytes, each format gives them back as they were


@pytest.fixture(scope="module")
def shim_linked_uses_library(tmp_path_factory, library_dirs) -> str:
    """uses_library with nixld's shim as its interpreter: a program nix and envrc wrappers start
    that shows which library directory it was given."""
    program = tmp_path_factory.mktemp("shim-linked") / "uses-library"
    compile_all([["-o", str(program), str(PROGRAMS / "uses_library.c"), f"-L{library_dirs.a}", "-lnixldtest",
                  f"-Wl,--dynamic-linker={shims.shim_path()}"]])
    return str(program)


def test_dollar_brace_backslash_and_quote_come_out_of_the_nix_expression_as_they_are(
        nixld_script, shim_linked_uses_library, library_dirs, tmp_path):
    """Nix interpolates ${ in a "..." string and reads \\ and \" as escapes: a directory, a
    loader and a program whose paths hold them come out of the expression byte for byte."""
    odd = tmp_path / 'odd ${x} \\ "y" $${z}'
    (odd / "lib").mkdir(parents=True)
    shutil.copy(os.path.join(library_dirs.b, "libnixldtest.so"), odd / "lib")
    shutil.copy(REAL_LOADER, odd / "ld.so")
    program = odd / "tool ${x}"
    shutil.copy(shim_linked_uses_library, program)
    output = tmp_path / "tool.nix"
    result = nixld_wrap(nixld_script, "-o", str(output), "--ld", str(odd / "ld.so"), "-L", str(odd / "lib"),
                        str(program), fmt="nix")
    assert (result.returncode, result.stderr) == (0, b"")
    command = nix_command(output)
    assert command == {"name": "tool---x-", "text": f"export NIX_LD='{odd}/ld.so'\n"
                                                    f"export NIX_LD_LIBRARY_PATH='{odd}/lib:{DEFAULT_LIBRARY_DIR}'\n"
                                                    f"exec '{program}' \"$@\"\n"}
    result = run("/bin/sh", "-c", command["text"], "tool", env={"PATH": "/usr/bin:/bin"})
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(GREETINGS["lib-b"]))


# Strings weighted towards what Nix reads in a "..." string: ${, $${, \, ", and bytes not UTF-8.
nix_awkward = st.lists(st.sampled_from([b"$", b"{", b"}", b"\\", b'"', b"'", b"\n", b"\r", b"\t", b"a", b"\xff"])
                       | st.binary(max_size=3), max_size=12).map(b"".join).filter(lambda value: b"\0" not in value)


@settings(max_examples=25)
@given(values=st.lists(nix_awkward, min_size=1, max_size=8))
@example(values=[b"${x}", b"\\${x}", b"$${x}", b"$\\{x}", b'"', b"\\", b"${", b"$", b"\n\r\t"])
def test_any_bytes_come_out_of_a_nix_string_as_they_went_in(tmp_path_factory, values):
    expression = tmp_path_factory.mktemp("nix") / "strings.nix"
    expression.write_bytes(b'map (builtins.hashString "sha256") [ ' + b" ".join(map(wrap.nix_string, values)) + b" ]")
    evaluated = subprocess.run([nix_instantiate(), "--eval", "--strict", "--json", str(expression)],
                               capture_output=True, timeout=TIMEOUT)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout) == [hashlib.sha256(value).hexdigest() for value in values]


@pytest.mark.parametrize("fixed", ["lib-a", "none"])
@pytest.mark.parametrize("ld_library_path", [None, ""], ids=["unset", "empty"])
def test_an_unset_or_empty_ld_library_path_adds_no_current_directory_entry(nixld_script, uses_library, library_dirs,
                                                                            tmp_path, launcher_format, fixed,
                                                                            ld_library_path):
    """To the loader an empty library-path entry is the current directory: the wrapper makes
    none of a caller's unset or empty LD_LIBRARY_PATH, with directories fixed or without, so a
    library in the directory it is started from is not loaded."""
    here, output = tmp_path / "here", tmp_path / "wrapped"
    here.mkdir()
    shutil.copy(os.path.join(library_dirs.b, "libnixldtest.so"), here)
    if fixed == "lib-a":
        args, nix_ld_library_path = ["-L", library_dirs.a], library_dirs.empty
    else:
        args, nix_ld_library_path = [], ":"  # set, with no directory
    result = nixld_wrap(nixld_script, "-o", str(output), *args, uses_library, fmt=launcher_format,
                        env=environment(NIX_LD_LIBRARY_PATH=nix_ld_library_path))
    directories = f"{library_dirs.a}:{library_dirs.empty}" if fixed == "lib-a" else "(none)"
    assert result.stdout == summary(launcher_format, output, uses_library, directories=directories)
    result = run(output, cwd=here, env=environment(LD_LIBRARY_PATH=ld_library_path))
    if fixed == "lib-a":
        assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(GREETINGS["lib-a"]))
    else:
        assert (result.returncode, result.stdout) == (127, b"")
        assert b"libnixldtest.so: cannot open shared object file" in result.stderr


# Settings as the two launcher formats hold them: no NUL anywhere, no ":" in a directory.
_field = st.binary(min_size=1, max_size=20).filter(lambda value: b"\0" not in value)
wrapper_settings = st.builds(
    wrap.WrapSettings, loader=_field, directories=st.lists(_field.filter(lambda value: b":" not in value),
                                                           max_size=3).map(tuple),
    program=_field, argv0=st.none(), takes_argv0=st.booleans()
) | st.builds(wrap.WrapSettings, loader=_field, directories=st.just(()), program=_field, argv0=_field,
              takes_argv0=st.just(True))


@given(written=wrapper_settings)
def test_a_wrapper_reads_back_as_the_settings_it_was_written_from(written):
    assert wrap.sh_settings(wrap.sh_script(written)) == written
    assert wrap.launcher_settings(wrap.launcher_bytes(written)) == written


def test_only_what_wrap_writes_reads_as_a_wrapper(probe):
    script = wrap.sh_script(wrap.WrapSettings(b"/ld.so", (b"/lib",), b"/tool", None, True))
    for edited in (script + b"echo more\n", script.replace(b"exec ", b"exec env "), script.replace(b"'/lib'", b"/lib"),
                   script.replace(b"'/lib'", b"''")):
        assert wrap.sh_settings(edited) is None
    with open(shims.launcher_path(), "rb") as stream:  # the launcher as installed has no settings
        assert wrap.launcher_settings(stream.read()) is None
    assert wrap.read_wrapper(os.fsencode(probe)) is None


# ---------------------------------------------------------------------------------------------
# Relative paths: read from the directory wrap runs in, written absolute


def start_from(fmt: str, output, program, cwd) -> subprocess.CompletedProcess:
    """Start, from `cwd`, what the wrapper at `output` starts, as its format is used: sh and
    binary run; the nix command's script run by sh; the envrc sourced by sh, which then starts
    `program`."""
    bare = {"PATH": "/usr/bin:/bin"}
    if fmt == "nix":
        return run("/bin/sh", "-c", nix_command(output)["text"], "tool", env=bare, cwd=cwd)
    if fmt == "envrc":
        return run("/bin/sh", "-c", '. "$0" && exec "$1"', output, program, env=bare, cwd=cwd)
    return run(output, cwd=cwd)


@pytest.mark.parametrize("fmt", wrap.FORMATS)
@pytest.mark.parametrize("relative", ["-L", "NIX_LD_LIBRARY_PATH", "--ld"])
def test_relative_paths_are_read_at_wrap_time_so_the_wrapper_works_from_anywhere(
        nixld_script, uses_library, shim_linked_uses_library, library_dirs, tmp_path, fmt, relative):
    """-L tool/lib, a NIX_LD_LIBRARY_PATH entry tool/lib, --ld tool/ld.so and the program
    tool/uses-library are read from the directory wrap runs in, as nixld run would read them
    there, and written absolute. An empty NIX_LD_LIBRARY_PATH entry stays none, not the
    current directory."""
    here, elsewhere, tool = tmp_path / "here", tmp_path / "elsewhere", tmp_path / "here" / "tool"
    (tool / "lib").mkdir(parents=True)
    elsewhere.mkdir()
    shutil.copy(os.path.join(library_dirs.b, "libnixldtest.so"), tool / "lib")
    shutil.copy(REAL_LOADER, tool / "ld.so")
    shutil.copy(shim_linked_uses_library if fmt in ("nix", "envrc") else uses_library, tool / "uses-library")
    args, env, loader = ["-L", "tool/lib"], environment(), REAL_LOADER
    directories = f"{tool}/lib:{DEFAULT_LIBRARY_DIR}"
    if relative == "NIX_LD_LIBRARY_PATH":
        args, env, directories = [], environment(NIX_LD_LIBRARY_PATH=":tool/lib::"), f"{tool}/lib"
    elif relative == "--ld":
        args, loader = ["--ld", "tool/ld.so", "-L", str(tool / "lib")], tool / "ld.so"
    result = nixld_wrap(nixld_script, "-o", "out", *args, "tool/uses-library", env=env, cwd=here, fmt=fmt)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == summary(fmt, "out", tool / "uses-library", loader, directories)
    result = start_from(fmt, here / "out", tool / "uses-library", elsewhere)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(GREETINGS["lib-b"]))


# ---------------------------------------------------------------------------------------------
# In place: the program moves to .NAME-wrapped beside it, the wrapper takes its name


@pytest.fixture
def vendor_tool(probe, tmp_path) -> Path:
    """A copy of the probe at vendor/bin/tool with its data file tool.data beside it, as
    vendors ship programs that find their files beside themselves (cmake its CMAKE_ROOT)."""
    bin_dir = tmp_path / "vendor" / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy(probe, bin_dir / "tool")
    (bin_dir / "tool.data").write_text("the tool's data\n")
    return bin_dir / "tool"


def moved(tool: Path) -> Path:
    return tool.parent / f".{tool.name}-wrapped"


def refused(refusal: str, tool: Path, probe) -> bytes:
    """nixld's one line for `refusal`, its {tool}, {moved} and {probe} filled in."""
    return f"nixld: {refusal.format(tool=tool, moved=moved(tool), probe=probe)}\n".encode()


def snapshot(directory: Path) -> dict:
    """Each entry of `directory`, hidden ones too: its inode, mode, owner, group and bytes."""
    return {name: (status.st_ino, status.st_mode, status.st_uid, status.st_gid, (directory / name).read_bytes())
            for name in sorted(os.listdir(directory)) for status in [os.lstat(directory / name)]}


def nixld_undo(nixld_script, program) -> subprocess.CompletedProcess:
    return subprocess.run([nixld_script, "wrap", "--undo", str(program)], env=environment(), capture_output=True,
                          timeout=TIMEOUT)


def in_place_summary(fmt: str, tool: Path) -> bytes:
    return summary(fmt, tool, moved(tool))[:-1] + f" (moved aside: `nixld wrap --undo {tool}` puts it back)\n".encode()


def test_a_program_wrapped_in_place_keeps_its_path_and_finds_its_files_beside_itself(nixld_script, vendor_tool,
                                                                                     tmp_path, launcher_format):
    """argv[0] is the program's own path, and through the binary launcher /proc/self/exe too,
    so the program finds its files from any directory. (Through the sh script, as through
    nixld run, /proc/self/exe is the loader.)"""
    inode = vendor_tool.stat().st_ino
    result = nixld_wrap(nixld_script, "--in-place", "vendor/bin/tool", cwd=tmp_path, fmt=launcher_format)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", in_place_summary(launcher_format, vendor_tool))
    assert sorted(os.listdir(vendor_tool.parent)) == [".tool-wrapped", "tool", "tool.data"]
    assert moved(vendor_tool).stat().st_ino == inode
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run(vendor_tool, "beside", "tool.data", cwd=elsewhere)
    through_exe = "the tool's data" if launcher_format == "binary" else \
        f"{os.path.dirname(os.path.realpath(REAL_LOADER))}/tool.data: No such file or directory"
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines("argv[0]: the tool's data", f"exe: {through_exe}")


@pytest.mark.parametrize("mode", [0o755, 0o710])
def test_the_wrapper_in_place_has_the_programs_permission_bits(nixld_script, vendor_tool, launcher_format, mode):
    """A shell reads a script to run it, so the sh wrapper is also readable by whoever may
    execute the program."""
    vendor_tool.chmod(mode)
    assert nixld_wrap(nixld_script, "--in-place", str(vendor_tool), fmt=launcher_format).returncode == 0
    readable = mode | (mode & 0o111) << 2 if launcher_format == "sh" else mode
    modes = stat.S_IMODE(vendor_tool.stat().st_mode), stat.S_IMODE(moved(vendor_tool).stat().st_mode)
    assert modes == (readable, mode)


def test_the_wrapper_in_place_has_the_programs_owner_and_group(nixld_script, vendor_tool, launcher_format):
    require(os.geteuid() == 0, "root, to give the program to another user", how="run as root, as CI does")
    os.chown(vendor_tool, 65534, 65534)
    assert nixld_wrap(nixld_script, "--in-place", str(vendor_tool), fmt=launcher_format).returncode == 0
    status = vendor_tool.stat()
    assert (status.st_uid, status.st_gid) == (65534, 65534)


def test_a_set_user_id_program_wrapped_in_place_keeps_its_bit_and_its_wrapper_has_none(nixld_script, vendor_tool,
                                                                                       launcher_format):
    vendor_tool.chmod(0o4755)
    result = nixld_wrap(nixld_script, "--in-place", str(vendor_tool), fmt=launcher_format)
    assert (result.returncode, result.stdout) == (0, in_place_summary(launcher_format, vendor_tool))
    assert result.stderr.startswith(b"nixld: warn: ") and result.stderr.count(b"\n") == 1
    advice = f"chmod u+s {vendor_tool}" if launcher_format == "binary" else "use --format binary"
    assert str(moved(vendor_tool)).encode() in result.stderr and advice.encode() in result.stderr
    assert (stat.S_IMODE(vendor_tool.stat().st_mode), stat.S_IMODE(moved(vendor_tool).stat().st_mode)) == \
        (0o755, 0o4755)


def _wrapped_in_place(nixld_script, tool: Path, probe) -> None:
    assert nixld_wrap(nixld_script, "--in-place", str(tool), fmt="sh").returncode == 0


def _moved_name_taken(nixld_script, tool: Path, probe) -> None:
    moved(tool).write_text("someone's file\n")


def _wrapper_of_another_program(nixld_script, tool: Path, probe) -> None:
    assert nixld_wrap(nixld_script, "--force", "-o", str(tool), probe).returncode == 0


def _symbolic_link(nixld_script, tool: Path, probe) -> None:
    tool.rename(tool.parent / "tool-1.0")
    tool.symlink_to("tool-1.0")


@pytest.mark.parametrize("prepare, refusal", [
    (_wrapped_in_place, "{tool} is wrapped in place already: to wrap it anew, run `nixld wrap --undo {tool}` first"),
    (_moved_name_taken, "{moved} exists, so {tool} cannot move there: move it away (an interrupted in-place wrap "
                        "leaves it as a second name of the program), then wrap again"),
    (_wrapper_of_another_program, "{tool} is a nixld wrapper of {probe}: wrap that program instead"),
    (_symbolic_link, "{tool} is a symbolic link: wrap the file it leads to, {tool}-1.0, in place"),
], ids=["wrapped-in-place", "moved-name-taken", "wrapper-of-another-program", "symbolic-link"])
def test_what_cannot_be_wrapped_in_place_is_refused_in_one_line_and_left_as_it_was(nixld_script, vendor_tool, probe,
                                                                                    launcher_format, prepare, refusal):
    prepare(nixld_script, vendor_tool, probe)
    before = snapshot(vendor_tool.parent)
    result = nixld_wrap(nixld_script, "--in-place", str(vendor_tool), fmt=launcher_format)
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr == refused(refusal, vendor_tool, probe)
    assert snapshot(vendor_tool.parent) == before


@pytest.mark.parametrize("step, failure, says", [
    ("fchmod", OSError(errno.EIO, os.strerror(errno.EIO)), "cannot write {tool}: Input/output error"),
    ("link", PermissionError(errno.EPERM, os.strerror(errno.EPERM)),
     "cannot wrap {tool} in place: it cannot be linked to {moved}: Operation not permitted (without a hard link, on "
     "a filesystem that has none or for a file you may not link, write the wrapper elsewhere with -o)"),
    ("link", KeyboardInterrupt(), None),
    ("replace", OSError(errno.EBUSY, os.strerror(errno.EBUSY)), "cannot write {tool}: Device or resource busy"),
    ("replace", KeyboardInterrupt(), None),
])
def test_a_failure_at_any_step_of_a_wrap_in_place_leaves_everything_as_it_was(vendor_tool, monkeypatch,
                                                                               launcher_format, step, failure, says):
    """Written to a temporary file, linked to .NAME-wrapped, renamed over the program: a step
    that fails undoes the steps before it."""
    before = snapshot(vendor_tool.parent)

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(wrap.os, step, fail)
    with pytest.raises(KeyboardInterrupt if says is None else wrap.WrapError) as raised:
        wrap.wrap_in_place(os.fsencode(vendor_tool), ld=REAL_LOADER.encode(), fmt=launcher_format)
    monkeypatch.undo()
    if says is not None:
        assert str(raised.value) == says.format(tool=vendor_tool, moved=moved(vendor_tool))
    assert snapshot(vendor_tool.parent) == before


def test_an_interrupt_once_the_wrapper_has_taken_the_programs_place_loses_nothing(vendor_tool, monkeypatch,
                                                                                  launcher_format):
    inode, replace = vendor_tool.stat().st_ino, os.replace

    def interrupted_after(*args):
        replace(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(wrap.os, "replace", interrupted_after)
    with pytest.raises(KeyboardInterrupt):
        wrap.wrap_in_place(os.fsencode(vendor_tool), ld=REAL_LOADER.encode(), fmt=launcher_format)
    monkeypatch.undo()
    assert moved(vendor_tool).stat().st_ino == inode
    assert wrap.read_wrapper(os.fsencode(vendor_tool)).program == os.fsencode(moved(vendor_tool))
    assert leftovers(vendor_tool.parent) == []


def test_a_wrapper_in_place_that_cannot_have_the_programs_owner_is_refused(vendor_tool, monkeypatch, launcher_format):
    require(os.geteuid() == 0, "root, to give the program to another user", how="run as root, as CI does")
    os.chown(vendor_tool, 65534, 65534)
    before = snapshot(vendor_tool.parent)

    def not_permitted(*args):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(wrap.os, "fchown", not_permitted)
    with pytest.raises(wrap.WrapError) as raised:
        wrap.wrap_in_place(os.fsencode(vendor_tool), ld=REAL_LOADER.encode(), fmt=launcher_format)
    monkeypatch.undo()
    assert str(raised.value) == (f"cannot give the wrapper at {vendor_tool} the program's owner and group (user ID "
                                 "65534, group ID 65534): Operation not permitted: wrap it as its owner, or as root")
    assert snapshot(vendor_tool.parent) == before


def test_undo_puts_the_program_back_as_it_was(nixld_script, vendor_tool, launcher_format):
    before = snapshot(vendor_tool.parent)
    assert nixld_wrap(nixld_script, "--in-place", str(vendor_tool), fmt=launcher_format).returncode == 0
    result = nixld_undo(nixld_script, vendor_tool)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == \
        f"{vendor_tool}: the program is back, from {moved(vendor_tool)}; its wrapper is gone\n".encode()
    assert snapshot(vendor_tool.parent) == before
    assert nixld_wrap(nixld_script, "--in-place", str(vendor_tool), fmt=launcher_format).returncode == 0


def _edited(nixld_script, tool: Path, probe) -> None:
    _wrapped_in_place(nixld_script, tool, probe)
    with open(tool, "a") as script:
        script.write("echo more\n")


def _program_gone(nixld_script, tool: Path, probe) -> None:
    _wrapped_in_place(nixld_script, tool, probe)
    moved(tool).unlink()


def _link_to_a_wrapper(nixld_script, tool: Path, probe) -> None:
    _wrapped_in_place(nixld_script, tool, probe)
    _symbolic_link(nixld_script, tool, probe)


def _missing(nixld_script, tool: Path, probe) -> None:
    tool.unlink()


NOT_A_WRAPPER = "{tool} is not a nixld wrapper (sh or binary): nothing to undo"


@pytest.mark.parametrize("prepare, status, refusal", [
    (lambda *args: None, 1, NOT_A_WRAPPER),
    (_edited, 1, NOT_A_WRAPPER),
    (_link_to_a_wrapper, 1, NOT_A_WRAPPER),
    (_wrapper_of_another_program, 1, "{tool} is a nixld wrapper of {probe}, not one made in place: there is no "
                                     "program to put back (remove it, if it is not wanted)"),
    (_program_gone, 1, "{tool} was wrapped in place, but {moved} is not there (or not a file): there is no program "
                       "to put back"),
    (_missing, 127, "{tool} does not exist: nothing to undo"),
], ids=["program", "edited-wrapper", "link-to-a-wrapper", "wrapper-of-another-program", "program-gone", "missing"])
def test_undo_refuses_anything_but_a_wrapper_made_in_place_in_one_line(nixld_script, vendor_tool, probe, prepare,
                                                                        status, refusal):
    prepare(nixld_script, vendor_tool, probe)
    before = snapshot(vendor_tool.parent)
    result = nixld_undo(nixld_script, vendor_tool)
    assert (result.returncode, result.stdout) == (status, b"")
    assert result.stderr == refused(refusal, vendor_tool, probe)
    assert snapshot(vendor_tool.parent) == before


def test_an_undo_whose_rename_fails_leaves_the_wrapper_in_place(nixld_script, vendor_tool, monkeypatch,
                                                                 launcher_format):
    assert nixld_wrap(nixld_script, "--in-place", str(vendor_tool), fmt=launcher_format).returncode == 0
    before = snapshot(vendor_tool.parent)

    def fail(*args):
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))

    monkeypatch.setattr(wrap.os, "replace", fail)
    with pytest.raises(wrap.WrapError, match="^cannot put .* back at .*: Device or resource busy$"):
        wrap.undo_in_place(os.fsencode(vendor_tool))
    monkeypatch.undo()
    assert snapshot(vendor_tool.parent) == before


def test_a_moved_tree_needs_its_wrapper_made_again_and_undo_still_works(nixld_script, vendor_tool, tmp_path,
                                                                        launcher_format):
    """The wrapper names .NAME-wrapped by its absolute path, as it names the loader and the
    library directories: moved, it starts what is no longer there. Undo knows the program by
    its name beside the wrapper, so it still puts it back, and a new wrap in place works."""
    assert nixld_wrap(nixld_script, "--in-place", str(vendor_tool), fmt=launcher_format).returncode == 0
    (tmp_path / "vendor").rename(tmp_path / "moved")
    tool = tmp_path / "moved" / "bin" / "tool"
    assert run(tool, "exit", "0").returncode == 127
    assert nixld_undo(nixld_script, tool).returncode == 0
    assert nixld_wrap(nixld_script, "--in-place", str(tool), fmt=launcher_format).returncode == 0
    result = run(tool, "beside", "tool.data")
    assert (result.returncode, result.stdout.splitlines()[0]) == (0, b"argv[0]: the tool's data")


@pytest.mark.parametrize("args, complaint", [
    (["--in-place", "--format", "nix"], "--in-place writes a sh or binary wrapper; --format nix cannot take PROGRAM's "
                                        "place"),
    (["--in-place", "--format", "envrc"], "--in-place writes a sh or binary wrapper; --format envrc cannot take "
                                          "PROGRAM's place"),
    (["--in-place", "-o", "out"], "--in-place writes the wrapper at PROGRAM itself: it takes no -o or --force"),
    (["--in-place", "--force"], "--in-place writes the wrapper at PROGRAM itself: it takes no -o or --force"),
    (["--undo", "-L", "lib", "--format", "sh"], "--undo takes PROGRAM alone, not -L, --format"),
    (["--undo", "--in-place"], "--undo takes PROGRAM alone, not --in-place"),
])
def test_in_place_and_undo_with_options_they_cannot_take_are_usage_errors(nixld_script, vendor_tool, args, complaint):
    before = snapshot(vendor_tool.parent)
    result = subprocess.run([nixld_script, "wrap", *args, str(vendor_tool)], env=environment(), capture_output=True,
                            timeout=TIMEOUT, cwd=vendor_tool.parent)
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr == f"nixld: wrap: {complaint}; see 'nixld wrap --help'\n".encode()
    assert snapshot(vendor_tool.parent) == before
