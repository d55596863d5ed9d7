"""plan_launch: what the launch will do, decided before anything runs.

Programs and loaders here are hand-made ELF headers (tests/crafted.py): planning never
executes them, so every machine, class and loader feature can be covered on one host.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from crafted import EM_386, EM_AARCH64, EM_RISCV, EM_X86_64, ET_CORE, ET_EXEC, ET_REL, write_elf, write_loader

import nixld
from nixld.config import DEFAULT_LOADER
from nixld.elf import read_header
from nixld.loader import (MODE_DIRECT, MODE_ENVIRONMENT, MODE_LIBRARY_PATH, environment_entries, environment_lookup,
                          ld_library_path_entry, plan_command)

X86_64_INTERPRETER = b"/lib64/ld-linux-x86-64.so.2"


@pytest.fixture
def program(tmp_path):
    return write_elf(tmp_path / "tool")


@pytest.fixture
def loader(tmp_path):
    return write_loader(tmp_path / "ld.so")


def elf_interpreter(path: bytes) -> bytes:
    return read_header(path).interpreter


def plan(program, env, **kwargs):
    return nixld.plan_launch(program, env=env, **kwargs)


def levels(decisions, level):
    return [message for decision_level, message in decisions if decision_level == level]


def test_the_plan_runs_the_loader_with_the_library_path_on_its_command_line(program, loader):
    env = {b"NIX_LD": loader, b"NIX_LD_LIBRARY_PATH": b"/nix/lib", b"HOME": b"/home/me"}
    launch = plan(program, env, argv=[b"tool-name", b"--flag", b""])
    assert launch.mode == MODE_LIBRARY_PATH
    assert launch.executable == loader
    assert launch.argv == (loader, b"--library-path", b"/nix/lib", b"--argv0", b"tool-name",
                           program, b"--flag", b"")
    assert launch.env == environment_entries(env)
    assert (launch.loader_source, launch.system) == ("NIX_LD", "x86_64_linux")


def test_argv_defaults_to_the_program_path_as_given(program, loader):
    launch = plan(program, {b"NIX_LD": loader})
    assert launch.argv[launch.argv.index(b"--argv0") + 1] == program


def test_the_library_path_is_the_callers_then_libs_then_nix_ld_dirs_without_duplicates(program, loader):
    env = {b"NIX_LD": loader, b"LD_LIBRARY_PATH": b"/mine:/shared", b"NIX_LD_LIBRARY_PATH": b"/shared,/nix"}
    launch = plan(program, env, libs=["/extra", b"/mine"])
    assert launch.library_path == (b"/mine", b"/shared", b"/extra", b"/nix")
    assert launch.argv[2] == b"/mine:/shared:/extra:/nix"


def test_of_two_ld_library_path_entries_the_plan_searches_the_last_as_glibcs_loader_does(program, loader):
    entries = (b"NIX_LD=" + loader, b"LD_LIBRARY_PATH=/first", b"NIX_LD_LIBRARY_PATH=/nix", b"LD_LIBRARY_PATH=/last")
    launch = plan_command(program, (program,), entries, (), None)
    assert launch.library_path == (b"/last", b"/nix")
    assert launch.env == entries  # the program still gets the block entry for entry


def test_of_two_entries_with_one_name_the_plan_decides_with_the_first_as_getenv_finds_it(tmp_path, program, loader):
    """nix-ld and the shim read NIX_LD with getenv(), which finds the first of two entries."""
    other = write_loader(tmp_path / "other-ld.so")
    entries = (b"NIX_LD=" + loader, b"NIX_LD_LIBRARY_PATH=/first", b"NIX_LD=" + other, b"NIX_LD_LIBRARY_PATH=/second")
    launch = plan_command(program, (program,), entries, (), None)
    assert (launch.loader, launch.library_path) == (loader, (b"/first",))
    assert environment_lookup(entries) == {b"NIX_LD": loader, b"NIX_LD_LIBRARY_PATH": b"/first"}


@pytest.mark.parametrize("entries, value", [
    ((), None),
    ((b"A=1", b"LD_LIBRARY_PATH_X=/x", b"XLD_LIBRARY_PATH=/y"), None),
    ((b"LD_LIBRARY_PATH",), None),  # no "=": the loader passes it over, as getenv() does
    ((b"LD_LIBRARY_PATH=",), b""),
    ((b"LD_LIBRARY_PATH=/first", b"A=1", b"LD_LIBRARY_PATH=/a=b:/c", b"LD_LIBRARY_PATH"), b"/a=b:/c"),
])
def test_ld_library_path_entry_is_the_value_of_the_last_entry_that_sets_it(entries, value):
    assert ld_library_path_entry(entries) == value


def test_a_single_library_directory_given_as_a_string_is_one_directory(program, loader):
    assert plan(program, {b"NIX_LD": loader, b"NIX_LD_LIBRARY_PATH": b"/n"}, libs="/only").library_path == (b"/only", b"/n")


def test_a_loader_without_library_path_gets_it_in_ld_library_path_and_a_warning(tmp_path, program):
    old_loader = write_loader(tmp_path / "old-ld.so", options=())
    env = {b"NIX_LD": old_loader, b"LD_LIBRARY_PATH": b"/mine", b"NIX_LD_LIBRARY_PATH": b"/nix", b"A": b"1"}
    launch = plan(program, env)
    assert launch.mode == MODE_ENVIRONMENT
    assert launch.argv == (old_loader, program)
    assert environment_lookup(launch.env)[b"LD_LIBRARY_PATH"] == b"/mine:/nix"
    assert [entry.split(b"=")[0] for entry in launch.env] == list(env)
    assert any("children will inherit" in message for message in levels(launch.decisions, "warn"))


def test_a_loader_without_argv0_warns_only_when_argv0_differs(tmp_path, program):
    old_loader = write_loader(tmp_path / "old-ld.so", options=(b"--library-path",))
    same = plan(program, {b"NIX_LD": old_loader})
    assert b"--argv0" not in same.argv and not levels(same.decisions, "warn")
    renamed = plan(program, {b"NIX_LD": old_loader}, argv=[b"other-name"])
    assert b"--argv0" not in renamed.argv
    assert any("no --argv0 option" in message for message in levels(renamed.decisions, "warn"))


def test_options_in_help_text_alone_do_not_count_as_supported(tmp_path, program):
    help_only = write_loader(tmp_path / "ld.so", options=(b"  --library-path PATH   use PATH",))
    assert plan(program, {b"NIX_LD": help_only}).mode == MODE_ENVIRONMENT


def test_a_32_bit_program_uses_the_i686_loader_and_library_path(tmp_path):
    program = write_elf(tmp_path / "tool32", elf_class=32, machine=EM_386)
    loader32 = write_loader(tmp_path / "ld32.so", elf_class=32, machine=EM_386)
    loader64 = write_loader(tmp_path / "ld64.so")
    env = {b"NIX_LD": loader64, b"NIX_LD_i686_linux": loader32,
           b"NIX_LD_LIBRARY_PATH": b"/lib64dirs", b"NIX_LD_LIBRARY_PATH_i686_linux": b"/lib32dirs"}
    launch = plan(program, env)
    assert (launch.loader, launch.loader_source, launch.system) == (loader32, "NIX_LD_i686_linux", "i686_linux")
    assert launch.library_path == (b"/lib32dirs",)


def test_a_loader_of_another_machine_is_refused_naming_both(tmp_path, program):
    aarch64_loader = write_loader(tmp_path / "ld-aarch64.so", machine=EM_AARCH64)
    with pytest.raises(nixld.LoaderError) as raised:
        plan(program, {b"NIX_LD": aarch64_loader})
    assert raised.value.exit_status == 126
    assert "aarch64 loader" in raised.value.message and "x86_64 program" in raised.value.message


def test_a_32_bit_program_with_only_a_64_bit_loader_is_refused(tmp_path, loader):
    program = write_elf(tmp_path / "tool32", elf_class=32, machine=EM_386)
    with pytest.raises(nixld.LoaderError, match="x86_64 loader .* i386 program.*NIX_LD_i686_linux"):
        plan(program, {b"NIX_LD": loader})


def test_a_program_for_another_machine_is_refused_naming_both(tmp_path):
    if os.uname().machine != "x86_64":
        pytest.skip("the message names this host's machine")
    program = write_elf(tmp_path / "arm-tool", machine=EM_AARCH64)
    with pytest.raises(nixld.ArchitectureMismatch) as raised:
        plan(program, {b"NIX_LD": b"/lib64/ld-linux-x86-64.so.2"})
    assert raised.value.exit_status == 126
    assert "aarch64 program" in raised.value.message and "runs x86_64" in raised.value.message
    assert "NIX_LD_aarch64_linux" in raised.value.message


def test_a_loader_named_for_a_foreign_system_means_emulation_is_intended(tmp_path):
    program = write_elf(tmp_path / "arm-tool", machine=EM_AARCH64)
    arm_loader = write_loader(tmp_path / "ld-aarch64.so", machine=EM_AARCH64)
    launch = plan(program, {b"NIX_LD_aarch64_linux": arm_loader})
    assert (launch.loader, launch.system) == (arm_loader, "aarch64_linux")


def test_the_loader_argument_wins_over_the_environment(tmp_path, program, loader):
    other = write_loader(tmp_path / "other-ld.so")
    launch = plan(program, {b"NIX_LD": other}, ld=loader)
    assert (launch.loader, launch.loader_source) == (loader, "--ld")


def test_a_missing_default_loader_names_the_variables_to_set(program):
    with pytest.raises(nixld.LoaderError) as raised:
        plan(program, {b"NIX_LD": b""})
    message = raised.value.message
    assert "/run/current-system/sw/share/nix-ld/lib/ld.so" in message
    assert "NIX_LD_x86_64_linux and NIX_LD are unset" in message and "set NIX_LD" in message


@pytest.mark.parametrize(
    "make_loader, complaint",
    [
        (lambda tmp: write_elf(tmp / "prog"), "not an ELF program loader"),
        (lambda tmp: write_loader(tmp / "lib.so", entry=0), "not an ELF program loader"),
        (lambda tmp: (tmp / "text").write_bytes(b"not elf") and os.fsencode(tmp / "text"), "not an ELF program loader"),
        (lambda tmp: os.fsencode(tmp), "not a regular file"),
        (lambda tmp: write_loader(tmp / "noexec.so", mode=0o644), "permission denied"),
    ],
)
def test_a_loader_that_cannot_start_programs_is_refused(tmp_path, program, make_loader, complaint):
    bad_loader = make_loader(tmp_path)
    with pytest.raises(nixld.LoaderError) as raised:
        plan(program, {b"NIX_LD": bad_loader})
    assert complaint in raised.value.message
    assert os.fsdecode(bad_loader) in raised.value.message and "from NIX_LD" in raised.value.message


def test_a_static_program_runs_directly_with_the_environment_untouched(tmp_path):
    static = write_elf(tmp_path / "static", interpreter=None, dynamic=False, elf_type=ET_EXEC)
    env = {b"LD_LIBRARY_PATH": b"/x", b"NIX_LD_LIBRARY_PATH": b"/y"}
    launch = plan(static, env, argv=[b"name", b"arg"])
    assert (launch.mode, launch.executable, launch.argv, launch.loader) == (MODE_DIRECT, static, (b"name", b"arg"), None)
    assert launch.env == environment_entries(env)


def write_script(path: Path, line: bytes, mode: int = 0o755) -> bytes:
    """A script whose first line is `#!` `line`; returns its path as bytes."""
    path.write_bytes(b"#!" + line + b"\necho hi\n")
    path.chmod(mode)
    return os.fsencode(path)


def same_launch(launch) -> tuple:
    """What a plan does, without the words that explain it."""
    return (launch.program, launch.executable, launch.argv, launch.env, launch.mode, launch.system,
            launch.loader, launch.loader_source, launch.library_path)


@pytest.fixture(params=["its own loader exists", "its own loader exists nowhere"])
def interpreter(request, tmp_path, loader):
    """A dynamically linked interpreter, whose PT_INTERP names an existing loader (as a
    distribution's python3 does on that distribution) or one that exists nowhere (as on NixOS)."""
    own_loader = loader if request.param == "its own loader exists" else b"/nix/store/0-glibc/lib/ld.so"
    return write_elf(tmp_path / "python", interpreter=own_loader)


@pytest.mark.parametrize("libs", [[], ["/extra"]], ids=["no -L", "-L"])
@pytest.mark.parametrize("settings", [{}, {b"NIX_LD_LIBRARY_PATH": b"/nix/lib", b"LD_LIBRARY_PATH": b"/mine"}],
                         ids=["no library variables", "NIX_LD_LIBRARY_PATH and LD_LIBRARY_PATH"])
def test_a_script_is_planned_as_its_dynamically_linked_interpreter_named_as_the_program_would_be(
        tmp_path, loader, interpreter, libs, settings):
    """`nixld run [-L DIR] SCRIPT ARGS` is `nixld run [-L DIR] INTERPRETER [ARGUMENT] SCRIPT ARGS`,
    the arguments the kernel gives a script's interpreter: -L, NIX_LD_LIBRARY_PATH and the rest
    reach the interpreter whether or not its own loader exists, as they reach any program."""
    script = write_script(tmp_path / "tool.py", interpreter + b"  -u  ")
    env = {b"NIX_LD": loader, **settings}
    launch = plan(script, env, libs=libs, argv=[script, b"arg", b""])
    as_program = plan(interpreter, env, libs=libs, argv=[interpreter, b"-u", script, b"arg", b""])
    assert same_launch(launch) == same_launch(as_program)
    assert launch.library_path == (*([b"/mine"] if settings else []), *map(os.fsencode, libs),
                                   *([b"/nix/lib"] if settings else [os.path.dirname(DEFAULT_LOADER)]))
    assert launch.argv == (loader, b"--library-path", b":".join(launch.library_path), b"--argv0", interpreter,
                           interpreter, b"-u", script, b"arg", b"")
    assert any(f"its #! interpreter {os.fsdecode(interpreter)} is a dynamically linked program: starting it "
               "through the loader" in message for message in levels(launch.decisions, "info"))


def test_a_script_named_with_another_argv0_is_warned_that_the_kernels_argv_has_no_place_for_it(
        tmp_path, loader, interpreter):
    script = write_script(tmp_path / "tool.py", interpreter)
    launch = plan(script, {b"NIX_LD": loader}, argv=[b"chosen-name", b"arg"])
    assert launch.argv[-3:] == (interpreter, script, b"arg")
    assert any("argv[0] 'chosen-name' is not passed on" in message for message in levels(launch.decisions, "warn"))
    assert not levels(plan(script, {b"NIX_LD": loader}, argv=[script, b"arg"]).decisions, "warn")


def _static_interpreter(tmp: Path) -> bytes:
    return write_elf(tmp / "busybox", interpreter=None, dynamic=False, elf_type=ET_EXEC)


def _script_interpreter(tmp: Path) -> bytes:
    return write_script(tmp / "wrapper.sh", b"/bin/sh")


def _text_interpreter(tmp: Path) -> bytes:
    (tmp / "notes").write_bytes(b"not a program\n")
    (tmp / "notes").chmod(0o755)
    return os.fsencode(tmp / "notes")


# Interpreters no loader starts: what the plan says of each.
NO_LOADER_FOR = {
    "statically linked": (_static_interpreter, "is statically linked"),
    "static-pie": (lambda tmp: write_elf(tmp / "static-pie", interpreter=None), "is statically linked"),
    "a #! script": (_script_interpreter, "is a #! script itself"),
    "not ELF": (_text_interpreter, "cannot be started through a loader"),
    "not executable": (lambda tmp: write_elf(tmp / "python", mode=0o644), "cannot be started through a loader"),
}


@pytest.mark.parametrize("kind", NO_LOADER_FOR)
def test_a_script_whose_interpreter_no_loader_starts_runs_directly_when_nothing_asks_for_one(tmp_path, loader, kind):
    make, what = NO_LOADER_FOR[kind]
    interpreter = make(tmp_path)
    script = write_script(tmp_path / "tool", interpreter)
    env = {b"NIX_LD": loader, b"NIX_LD_LIBRARY_PATH": b"/nix/lib"}  # the setting of every session
    launch = plan(script, env, argv=[script, b"arg"])
    assert (launch.mode, launch.executable, launch.argv, launch.loader) == (MODE_DIRECT, script, (script, b"arg"), None)
    assert launch.env == environment_entries(env)
    assert any(f"its #! interpreter {os.fsdecode(interpreter)} {what}" in message and "running the script directly"
               in message for message in levels(launch.decisions, "info"))


@pytest.mark.parametrize("kind", NO_LOADER_FOR)
@pytest.mark.parametrize("asked, options", [({"libs": ["/extra"]}, "-L"), ({"ld": "LOADER"}, "--ld"),
                                            ({"libs": ["/extra"], "ld": "LOADER"}, "-L and --ld")])
def test_a_script_whose_interpreter_no_loader_starts_is_refused_what_would_not_apply(tmp_path, loader, kind, asked,
                                                                                      options):
    make, what = NO_LOADER_FOR[kind]
    interpreter = make(tmp_path)
    script = write_script(tmp_path / "tool", interpreter)
    asked = {name: loader if value == "LOADER" else value for name, value in asked.items()}
    with pytest.raises(nixld.NotExecutable) as raised:
        plan(script, {b"NIX_LD": loader}, **asked)
    assert raised.value.exit_status == 126
    message = raised.value.message
    assert message.startswith(f"{os.fsdecode(script)}: its #! interpreter {os.fsdecode(interpreter)} {what}")
    assert f", so {options} cannot apply: " in message and message.endswith(f" without {options}")
    assert "\n" not in message


@pytest.mark.parametrize("asked, options", [({"libs": ["/extra"]}, "-L"), ({"ld": "LOADER"}, "--ld")])
def test_a_static_program_is_refused_library_directories_or_a_loader(tmp_path, loader, asked, options):
    static = write_elf(tmp_path / "static", interpreter=None, dynamic=False, elf_type=ET_EXEC)
    asked = {name: loader if value == "LOADER" else value for name, value in asked.items()}
    with pytest.raises(nixld.NotExecutable) as raised:
        plan(static, {b"NIX_LD": loader}, **asked)
    assert raised.value.message == (f"{os.fsdecode(static)} is statically linked, so {options} cannot apply: "
                                    f"run it without {options}")


def test_a_script_whose_interpreter_is_missing_names_it(tmp_path):
    script = tmp_path / "tool.sh"
    script.write_bytes(b"#!/no/such/shell\necho hi\n")
    script.chmod(0o755)
    with pytest.raises(nixld.ProgramNotFound, match="tool.sh: its #! interpreter /no/such/shell does not exist"):
        plan(script, {})


def test_a_shared_library_is_not_a_program(tmp_path):
    library = write_elf(tmp_path / "libthing.so", interpreter=None, entry=0)
    with pytest.raises(nixld.NotExecutable, match="is a shared library"):
        plan(library, {})


def test_a_static_pie_program_runs_directly(tmp_path):
    static_pie = write_elf(tmp_path / "static-pie", interpreter=None)
    assert plan(static_pie, {}).mode == MODE_DIRECT


def test_relative_paths_are_taken_from_the_childs_working_directory(tmp_path, loader):
    (tmp_path / "bin").mkdir()
    write_elf(tmp_path / "bin" / "tool")
    launch = plan("bin/tool", {b"NIX_LD": loader}, cwd=tmp_path)
    assert launch.argv[-1] == b"./bin/tool"
    with pytest.raises(nixld.ProgramNotFound):
        plan("bin/tool", {b"NIX_LD": loader})


@pytest.mark.parametrize("bits", [stat.S_ISUID, stat.S_ISGID, stat.S_ISUID | stat.S_ISGID])
def test_a_set_user_or_group_id_program_is_warned_about(tmp_path, loader, bits):
    program = write_elf(tmp_path / "privileged", mode=0o755 | bits)
    warnings = levels(plan(program, {b"NIX_LD": loader}).decisions, "warn")
    assert any("set-user-ID or set-group-ID" in message and "without those privileges" in message
               for message in warnings)


def test_a_program_without_those_bits_gets_no_such_warning(program, loader):
    assert levels(plan(program, {b"NIX_LD": loader}).decisions, "warn") == []


def test_a_bare_name_is_searched_on_the_environments_path(tmp_path, loader):
    (tmp_path / "bin").mkdir()
    found = write_elf(tmp_path / "bin" / "tool")
    launch = plan("tool", {b"NIX_LD": loader, b"PATH": b"/nonexistent:" + os.fsencode(tmp_path / "bin")})
    assert launch.program == found
    assert launch.argv[-1] == found
    assert launch.argv[launch.argv.index(b"--argv0") + 1] == b"tool"


def test_an_empty_path_entry_is_the_current_directory_given_to_the_loader_with_a_slash(tmp_path, loader, monkeypatch):
    write_elf(tmp_path / "tool")
    monkeypatch.chdir(tmp_path)
    launch = plan("tool", {b"NIX_LD": loader, b"PATH": b"/nonexistent:"})
    assert launch.argv[-1] == b"./tool"


def test_a_relative_path_is_handed_to_the_loader_as_a_path_not_a_name(tmp_path, loader, monkeypatch):
    (tmp_path / "-odd").mkdir()
    write_elf(tmp_path / "-odd" / "tool")
    monkeypatch.chdir(tmp_path)
    launch = plan("-odd/tool", {b"NIX_LD": loader})
    assert launch.argv[-1] == b"./-odd/tool"
    assert launch.argv[launch.argv.index(b"--argv0") + 1] == b"-odd/tool"


def test_a_name_found_only_without_execute_permission_is_permission_denied(tmp_path, loader):
    write_elf(tmp_path / "tool", mode=0o644)
    with pytest.raises(nixld.NotExecutable, match="permission denied"):
        plan("tool", {b"NIX_LD": loader, b"PATH": os.fsencode(tmp_path)})


def test_a_name_is_found_past_a_file_without_execute_permission_as_a_shell_finds_it(tmp_path, loader):
    """PATH's first directory holds `tool` without execute permission, its second an executable
    `tool`: a shell (execvp) runs the second; the first is only reported when nothing runs."""
    directories = [tmp_path / "not-executable", tmp_path / "executable"]
    for directory, mode in zip(directories, (0o644, 0o755)):
        directory.mkdir()
        (directory / "tool").write_text(f"#!/bin/sh\necho {directory.name}\n")
        (directory / "tool").chmod(mode)
    search = ":".join(map(str, directories))
    shell = subprocess.run(["/bin/sh", "-c", "tool"], env={"PATH": search}, capture_output=True, text=True, timeout=60)
    assert (shell.returncode, shell.stdout) == (0, "executable\n")
    launch = plan("tool", {b"NIX_LD": loader, b"PATH": os.fsencode(search)})
    # A script: its interpreter is planned as the program, and the script is its operand.
    assert os.fsencode(directories[1] / "tool") in launch.argv
    assert os.fsencode(directories[0] / "tool") not in launch.argv


@pytest.mark.parametrize(
    "name, error, status, complaint",
    [
        ("no-such-tool-anywhere", nixld.ProgramNotFound, 127, "no-such-tool-anywhere: command not found on PATH"),
        ("/no/such/tool", nixld.ProgramNotFound, 127, "/no/such/tool: no such file"),
        ("/etc/hostname/tool", nixld.ProgramNotFound, 127, "/etc/hostname/tool: no such file"),
        ("", nixld.ProgramNotFound, 127, "empty program name"),
        ("/", nixld.NotExecutable, 126, "/: is a directory"),
        ("/dev/null", nixld.NotExecutable, 126, "/dev/null: not a regular file"),
    ],
)
def test_programs_that_cannot_be_found_or_run(name, error, status, complaint):
    with pytest.raises(error) as raised:
        plan(name, {b"PATH": b"/nonexistent"})
    assert raised.value.exit_status == status
    assert complaint in raised.value.message


@pytest.mark.parametrize("elf_type, kind", [(ET_REL, "relocatable object"), (ET_CORE, "core dump")])
def test_elf_files_that_are_not_programs_are_refused(tmp_path, elf_type, kind):
    path = write_elf(tmp_path / "object.o", elf_type=elf_type)
    with pytest.raises(nixld.NotExecutable, match=kind):
        plan(path, {})


def test_a_corrupt_program_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "cut"
    path.write_bytes(Path("/usr/bin/true").read_bytes()[:100])
    path.chmod(0o755)
    with pytest.raises(nixld.NotExecutable, match="cut: truncated ELF file"):
        plan(path, {})


def test_an_unknown_log_level_becomes_a_warning_and_the_level_is_recorded(program, loader):
    launch = plan(program, {b"NIX_LD": loader, b"NIX_LD_LOG": b"chatty"})
    assert launch.log_level == "warn"
    assert any("NIX_LD_LOG='chatty'" in message for message in levels(launch.decisions, "warn"))
    assert plan(program, {b"NIX_LD": loader, b"NIX_LD_LOG": b"debug"}).log_level == "debug"


def test_the_plan_is_immutable_data(program, loader):
    launch = plan(program, {b"NIX_LD": loader})
    with pytest.raises(AttributeError):
        launch.loader = b"/elsewhere"
    assert launch == plan(program, {b"NIX_LD": loader})


def test_str_environments_are_encoded_and_bad_names_refused(program, loader):
    launch = plan(program, {"NIX_LD": os.fsdecode(loader), "LANG": "C.UTF-8"})
    assert b"LANG=C.UTF-8" in launch.env
    for bad in ({"": "x"}, {"A=B": "x"}, {"A": "x\0y"}):
        with pytest.raises(ValueError):
            plan(program, {**bad, "NIX_LD": os.fsdecode(loader)})


def test_the_default_environment_is_the_processes_own(program, loader, monkeypatch):
    monkeypatch.setenv("NIX_LD", os.fsdecode(loader))
    launch = nixld.plan_launch(program)
    assert launch.env == environment_entries(os.environb)
    assert launch.loader == loader


# ---------------------------------------------------------------------------------------------
# What a loader is, and which C library's


@pytest.mark.parametrize(
    "fields, what",
    [
        ({"elf_type": ET_EXEC}, "a statically linked program"),
        ({"interpreter": b"/lib64/ld-linux-x86-64.so.2"}, "a dynamically linked program"),
        ({"entry": 0}, "a shared library"),
    ],
)
def test_only_a_shared_object_with_an_entry_point_and_no_interpreter_is_a_loader(tmp_path, program, fields, what):
    not_a_loader = write_loader(tmp_path / "ld.so", **fields)
    with pytest.raises(nixld.LoaderError) as raised:
        plan(program, {b"NIX_LD": not_a_loader})
    assert f"is not an ELF program loader (it is {what}" in raised.value.message
    assert raised.value.exit_status == 126


def test_a_musl_loader_takes_the_library_path_and_argv0_on_its_command_line(tmp_path, program):
    musl = write_loader(tmp_path / "ld-musl-x86_64.so.1", kind="musl")
    launch = plan(program, {b"NIX_LD": musl, b"NIX_LD_LIBRARY_PATH": b"/nix/lib"}, argv=[b"tool"])
    assert launch.mode == MODE_LIBRARY_PATH
    assert launch.argv == (musl, b"--library-path", b"/nix/lib", b"--argv0", b"tool", program)
    assert not levels(launch.decisions, "warn")
    assert any("a musl loader" in message for message in levels(launch.decisions, "info"))


def test_a_musl_loader_is_not_read_with_glibcs_spelling(tmp_path, program):
    """musl stores `library-path`, not `--library-path`: glibc's spelling in a musl loader is
    some other string, and must not count."""
    musl = write_loader(tmp_path / "ld-musl.so", kind="musl", options=())
    mixed = write_elf(tmp_path / "mixed.so", interpreter=None,
                      payload=b"\0musl libc\0--library-path\0--argv0\0")
    for loader in (musl, mixed):
        launch = plan(program, {b"NIX_LD": loader})
        assert launch.mode == MODE_ENVIRONMENT and b"--argv0" not in launch.argv


def test_an_old_musl_loader_without_argv0_warns_when_argv0_differs(tmp_path, program):
    musl = write_loader(tmp_path / "ld-musl.so", kind="musl", options=(b"--library-path",))
    launch = plan(program, {b"NIX_LD": musl}, argv=[b"other-name"])
    assert launch.mode == MODE_LIBRARY_PATH and b"--argv0" not in launch.argv
    assert any("no --argv0 option" in message for message in levels(launch.decisions, "warn"))


def test_an_unrecognised_loader_is_read_with_glibcs_spelling(tmp_path, program):
    other = write_loader(tmp_path / "ld.so", kind="unknown")
    launch = plan(program, {b"NIX_LD": other})
    assert launch.mode == MODE_LIBRARY_PATH and b"--argv0" in launch.argv
    assert any("an unrecognised loader" in message for message in levels(launch.decisions, "info"))


def test_options_outside_the_loaders_read_only_data_do_not_count(tmp_path, program):
    """String constants live in the loaded read-only segments; bytes after them (say, a
    section that is never loaded) are no evidence of what the loader accepts."""
    loader = tmp_path / "ld.so"
    loader.write_bytes(Path(os.fsdecode(write_loader(loader, options=()))).read_bytes()
                       + b"\0--library-path\0--argv0\0")
    assert plan(program, {b"NIX_LD": os.fsencode(loader)}).mode == MODE_ENVIRONMENT


def test_checking_the_real_loader_reads_its_read_only_data_not_the_whole_file(program, monkeypatch):
    real = b"/lib64/ld-linux-x86-64.so.2"
    read = []
    pread = os.pread

    def counting_pread(fd, size, offset):
        data = pread(fd, size, offset)
        read.append(len(data))
        return data

    monkeypatch.setattr(os, "pread", counting_pread)
    launch = plan(program, {b"NIX_LD": real})
    assert (launch.mode, launch.argv[3]) == (MODE_LIBRARY_PATH, b"--argv0")
    assert sum(read) < os.path.getsize(real) / 3


# ---------------------------------------------------------------------------------------------
# The last step of the loader's precedence: the program's own interpreter


@pytest.fixture
def no_nix_ld_default():
    if os.path.exists(DEFAULT_LOADER):
        pytest.skip(f"nix-ld's default loader {os.fsdecode(DEFAULT_LOADER)} exists on this machine")


def test_with_no_loader_configured_an_existing_interpreter_that_is_a_loader_is_used(tmp_path, no_nix_ld_default):
    interpreter = write_loader(tmp_path / "ld-linux-x86-64.so.2")
    program = write_elf(tmp_path / "tool", interpreter=interpreter)
    launch = plan(program, {b"NIX_LD": b"", b"PATH": b"/usr/bin"})
    assert (launch.loader, launch.loader_source, launch.mode) == (interpreter, "interpreter", MODE_LIBRARY_PATH)
    assert any("the program's own interpreter; NIX_LD_x86_64_linux and NIX_LD are unset and nix-ld's "
               "default does not exist" in message for message in levels(launch.decisions, "info"))


def test_a_distribution_program_runs_through_its_own_loader_without_configuration(no_nix_ld_default):
    launch = plan(b"/usr/bin/true", {})
    assert (launch.loader, launch.loader_source) == (elf_interpreter(b"/usr/bin/true"), "interpreter")


@pytest.mark.parametrize("settings", [{b"NIX_LD": b"/nonexistent/ld.so"}, {b"NIX_LD_x86_64_linux": b"/nonexistent/ld.so"}])
def test_a_loader_that_is_named_but_missing_is_an_error_even_when_the_interpreter_exists(settings):
    with pytest.raises(nixld.LoaderError, match="/nonexistent/ld.so"):
        plan(b"/usr/bin/true", settings)


def test_an_interpreter_that_is_not_a_loader_is_not_used(tmp_path, no_nix_ld_default):
    interpreter = write_elf(tmp_path / "not-a-loader", elf_type=ET_EXEC, interpreter=None)
    program = write_elf(tmp_path / "tool", interpreter=interpreter)
    with pytest.raises(nixld.LoaderError) as raised:
        plan(program, {})
    assert os.fsdecode(DEFAULT_LOADER) in raised.value.message and "does not exist" in raised.value.message


# ---------------------------------------------------------------------------------------------
# Advice that names the setting in effect


@pytest.mark.parametrize(
    "settings, ld, advice",
    [
        ({b"NIX_LD_x86_64_linux": b"/nope"}, None, "set NIX_LD_x86_64_linux to the path of an x86_64 loader"),
        ({b"NIX_LD": b"/nope"}, None, "set NIX_LD to the path of an x86_64 loader"),
        ({b"NIX_LD": b"/elsewhere"}, b"/nope", "give --ld the path of an x86_64 loader"),
        ({}, None, "set NIX_LD (or NIX_LD_x86_64_linux) to the path of an x86_64 loader"),
    ],
)
def test_the_advice_for_a_missing_loader_names_the_setting_that_chose_it(program, settings, ld, advice):
    with pytest.raises(nixld.LoaderError) as raised:
        plan(program, settings, ld=ld)
    assert raised.value.message.endswith(advice + (" (glibc's ld.so)" if ld or settings else
                                                   " (glibc's ld.so); on NixOS, programs.nix-ld.enable = true sets it for you"))


@pytest.mark.parametrize("class_, machine, name", [(32, EM_RISCV, "riscv32"), (32, EM_X86_64, "x32")])
def test_a_program_of_a_machine_without_a_nix_system_name_is_told_to_use_ld(tmp_path, class_, machine, name):
    program = write_elf(tmp_path / "tool", elf_class=class_, machine=machine)
    with pytest.raises(nixld.ArchitectureMismatch) as raised:
        plan(program, {b"NIX_LD": b"/lib64/ld-linux-x86-64.so.2"})
    assert f"is a {name} program" in raised.value.message or f"is an {name} program" in raised.value.message
    assert f"give --ld the path of {'an' if name == 'x32' else 'a'} {name} loader" in raised.value.message
    assert "NIX_LD_" not in raised.value.message.replace("no NIX_LD_* variable", "")
    loader = write_loader(tmp_path / "ld.so", elf_class=class_, machine=machine)
    assert plan(program, {}, ld=loader).loader == loader


def test_a_32_bit_program_with_a_64_bit_loader_is_told_to_set_the_i686_variable(tmp_path, loader):
    program = write_elf(tmp_path / "tool32", elf_class=32, machine=EM_386)
    with pytest.raises(nixld.LoaderError) as raised:
        plan(program, {b"NIX_LD": loader})
    assert "is an x86_64 loader but" in raised.value.message and "is an i386 program" in raised.value.message
    assert raised.value.message.endswith("set NIX_LD_i686_linux to the path of an i386 loader")


# ---------------------------------------------------------------------------------------------
# Arguments of the wrong kind


@pytest.mark.parametrize("argv", ["abc", b"xy", bytearray(b"xy"), Path("/bin/x")])
@pytest.mark.parametrize("call", [nixld.plan_launch, nixld.exec_foreign, nixld.run_foreign, nixld.spawn_foreign],
                         ids=lambda call: call.__name__)
def test_argv_given_as_one_string_is_refused_not_split_into_characters(program, loader, call, argv):
    with pytest.raises(TypeError, match="argv must be a sequence of arguments"):
        call(program, argv=argv, env={b"NIX_LD": loader})


@pytest.mark.parametrize("call", [nixld.run_foreign, nixld.spawn_foreign], ids=lambda call: call.__name__)
@pytest.mark.parametrize("keyword", ["shell", "executable", "args"])
def test_subprocess_keywords_that_would_bypass_the_loader_are_refused(program, loader, call, keyword):
    with pytest.raises(TypeError, match=keyword):
        call(program, env={b"NIX_LD": loader}, **{keyword: True})


def test_libs_none_means_no_extra_directories(program, loader):
    env = {b"NIX_LD": loader, b"NIX_LD_LIBRARY_PATH": b"/nix/lib"}
    assert plan(program, env, libs=None).library_path == (b"/nix/lib",)
