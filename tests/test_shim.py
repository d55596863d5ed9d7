"""nixld's shim: a program interpreter that starts foreign programs directly through the real
loader, leaving them exactly their caller's environment.

Test programs are linked with `-Wl,--dynamic-linker=SHIM`: the kernel starts them through the
shim, as it starts a program through nix-ld's shim at /lib64/ld-linux-x86-64.so.2 on NixOS.
Each behaviour is checked for x86-64 programs and, where gcc-multilib is installed, for i686
programs on this 64-bit kernel (NIX_LD_i686_linux).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections import namedtuple
from pathlib import Path

import pytest
from conftest import GREETINGS, I386_LOADER, PROGRAMS, PROJECT, compile_all, require, why_gcc_cannot_build_32_bit
from crafted import EM_AARCH64, load_headers, rewrite_program_header, write_elf, write_loader
from elftools.elf.elffile import ELFFile
from environments import NIX_LD_TABLE, explicit_environment, run_with_block

import nixld
from nixld import shims, wrap
from nixld._shim_build import build_shim, relocation_bytes, shim_name, shim_systems

TIMEOUT = 30
LOADERS = {"x86_64_linux": "/lib64/ld-linux-x86-64.so.2", "i686_linux": I386_LOADER}
DEFAULT_LOADER = "/run/current-system/sw/share/nix-ld/lib/ld.so"
DEFAULT_LIBRARY_DIR = "/run/current-system/sw/share/nix-ld/lib"
SYSTEMS = list(LOADERS)
NOBODY = 65534

Programs = namedtuple("Programs", "system shim loader probe uses_library dlopens_library lib_a lib_b native_probe "
                      "constructed", defaults=[None, None])


def build_programs(root: Path, system: str) -> Programs:
    shim = built_shim(system)
    flags = ["-m32"] if system == "i686_linux" else []
    interpreter = f"-Wl,--dynamic-linker={shim}"
    lib_a, lib_b = root / "lib-a", root / "lib-b"
    for directory in (lib_a, lib_b):
        directory.mkdir()
    compile_all([[*flags, "-shared", "-fPIC", f'-DGREETING="{GREETINGS[d.name]}"', "-o",
                   str(d / "libnixldtest.so"), str(PROGRAMS / "nixldtest.c")] for d in (lib_a, lib_b)]
                 + [[*flags, "-o", str(root / "probe"), str(PROGRAMS / "probe.c"), interpreter],
                    [*flags, "-o", str(root / "native-probe"), str(PROGRAMS / "probe.c")],
                    [*flags, "-o", str(root / "dlopens-library"), str(PROGRAMS / "dlopens_library.c"), interpreter]])
    lib_c = root / "lib-c"
    lib_c.mkdir()
    compile_all([[*flags, "-o", str(root / "uses-library"), str(PROGRAMS / "uses_library.c"),
                   f"-L{lib_a}", "-lnixldtest", interpreter],
                 [*flags, "-shared", "-fPIC", "-o", str(lib_c / "libconstructor.so"),
                  str(PROGRAMS / "constructor_library.c")]])
    # The probe with libconstructor.so, found through its RUNPATH: no library path needed.
    compile_all([[*flags, "-o", str(root / "constructed-probe"), str(PROGRAMS / "probe.c"), "-Wl,--no-as-needed",
                  f"-L{lib_c}", "-lconstructor", "-Wl,--enable-new-dtags,-rpath,$ORIGIN/lib-c", interpreter]])
    return Programs(system, shim, LOADERS[system], str(root / "probe"), str(root / "uses-library"),
                    str(root / "dlopens-library"), str(lib_a), str(lib_b), str(root / "native-probe"),
                    str(root / "constructed-probe"))


@pytest.fixture(scope="session")
def x86_64_programs(tmp_path_factory) -> Programs:
    return build_programs(tmp_path_factory.mktemp("shim-x86_64"), "x86_64_linux")


@pytest.fixture(scope="session")
def i686_programs(tmp_path_factory) -> Programs:
    why = why_gcc_cannot_build_32_bit()
    require(why is None, f"gcc cannot build 32-bit programs ({why})", package="gcc-multilib")
    require(os.path.exists(I386_LOADER), f"the i386 loader {I386_LOADER} is missing", package="libc6-i386")
    return build_programs(tmp_path_factory.mktemp("shim-i686"), "i686_linux")


@pytest.fixture(params=SYSTEMS)
def programs(request) -> Programs:
    """The shim's test programs for x86-64 and for i686."""
    return request.getfixturevalue(request.param.replace("_linux", "_programs"))


def environment(programs: Programs, **variables: str | None) -> dict:
    """PATH, a UTF-8 locale and NIX_LD_{system} naming the loader for the programs' system,
    then `variables` (None unsets)."""
    return explicit_environment(programs.loader, f"NIX_LD_{programs.system}", **variables)


def run(*argv, env, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([os.fsencode(arg) for arg in argv], env=env, capture_output=True, timeout=TIMEOUT,
                          **kwargs)


def lines(*items) -> bytes:
    return b"".join(os.fsencode(item) + b"\n" for item in items)


def variable_lines(env: dict, *names: str) -> bytes:
    return lines(*(f"{name}={env[name]}" if name in env else f"{name} unset" for name in names))


def assert_one_shim_line(stderr: bytes, *culprits: str) -> str:
    """stderr is one line from the shim naming every culprit; returns it."""
    text = stderr.decode(errors="backslashreplace")
    assert text.startswith("nixld shim: ") and text.endswith("\n") and text.count("\n") == 1, text
    for culprit in culprits:
        assert culprit in text, (culprit, text)
    return text


# ---------------------------------------------------------------------------------------------
# What is built, and where it is


def built_shim(system: str) -> str:
    """The shim for `system`. This machine's own is always built; the i686 one needs gcc to
    target i386 (-m32), which gcc-multilib guarantees."""
    if system != shim_systems()[0]:
        require(system in shims.built_systems(), f"nixld was installed without its {system} shim "
                "(gcc -m32 failed when it was built)", package="gcc-multilib")
    return nixld.shim_path(system)


@pytest.mark.parametrize("system", shims.SHIM_SYSTEMS)
def test_the_shim_is_built_for_each_system_this_machine_runs(system):
    if system in shim_systems():
        assert os.access(built_shim(system), os.X_OK)
    else:
        with pytest.raises(nixld.ShimUnavailable, match=f"no shim for {system}"):
            nixld.shim_path(system)


@pytest.mark.parametrize("system", SYSTEMS)
def test_the_shim_is_a_static_pie_interpreter_that_needs_no_relocation(system):
    """The kernel starts an interpreter before any loader exists: nothing may need relocating."""
    with open(built_shim(system), "rb") as stream:
        shim = ELFFile(stream)
        assert shim.header.e_type == "ET_DYN" and shim.header.e_entry != 0
        assert shim.elfclass == (64 if system == "x86_64_linux" else 32)
        types = [segment.header.p_type for segment in shim.iter_segments()]
        assert "PT_INTERP" not in types
        relocations = [section.name for section in shim.iter_sections()
                       if section.header.sh_type in ("SHT_RELA", "SHT_REL", "SHT_RELR") and section.data_size]
        assert relocations == []
        assert not shim.get_section_by_name(".got") or not shim.get_section_by_name(".got").data_size
        dynamic = shim.get_section_by_name(".dynamic")
        needed = [tag for tag in dynamic.iter_tags() if tag.entry.d_tag == "DT_NEEDED"] if dynamic else []
        assert needed == []


@pytest.mark.parametrize("system", [None, *SYSTEMS])
def test_the_shim_path_is_the_same_from_python_and_from_the_command_line(nixld_script, system):
    path = built_shim(system or shim_systems()[0])
    result = run(nixld_script, "shim", "--path", *(["--system", system] if system else []), env={"PATH": "/usr/bin:/bin"})
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(path))
    assert nixld.shim_path(system) == path


def test_a_shim_this_machine_cannot_run_is_not_built_and_asking_for_it_is_one_line_and_status_1(nixld_script):
    other = next(system for system in shims.SHIM_SYSTEMS if system not in shim_systems())  # aarch64 on x86-64
    result = run(nixld_script, "shim", "--path", "--system", other, env={"PATH": "/usr/bin:/bin"})
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr.startswith(f"nixld: this installation has no shim for {other}".encode())
    assert result.stderr.count(b"\n") == 1


def test_asking_for_a_shim_of_an_unknown_system_is_a_usage_error(nixld_script):
    result = run(nixld_script, "shim", "--path", "--system", "sparc_linux", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert b"sparc_linux" in result.stderr and result.stderr.count(b"\n") == 1
    with pytest.raises(nixld.ShimUnavailable, match="sparc_linux"):
        nixld.shim_path("sparc_linux")


# ---------------------------------------------------------------------------------------------
# Programs started through the shim


def test_a_program_linked_with_the_shim_as_interpreter_runs(programs):
    result = run(programs.probe, "argv", "one", "two words", env=environment(programs))
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(programs.probe, "argv", "one", "two words")


def test_without_a_loader_the_kernel_starts_the_shim_and_the_shim_explains(programs):
    result = run(programs.probe, "argv", env=environment(programs, **{f"NIX_LD_{programs.system}": None}))
    assert result.returncode == 126 and result.stdout == b""
    assert_one_shim_line(result.stderr, programs.probe, DEFAULT_LOADER, "does not exist",
                         f"NIX_LD_{programs.system}", "programs.nix-ld.enable")


def test_the_generic_nix_ld_serves_when_the_system_one_is_unset(programs):
    env = environment(programs, **{f"NIX_LD_{programs.system}": None, "NIX_LD": programs.loader + "\n"})
    result = run(programs.probe, "exit", "0", env=env)
    assert (result.returncode, result.stderr) == (0, b"")


def test_one_trailing_newline_of_nix_ld_is_stripped_and_no_more(programs):
    """Values read from nix-support/dynamic-linker end in one newline; a second is the path's."""
    env = environment(programs, **{f"NIX_LD_{programs.system}": programs.loader + "\n"})
    assert run(programs.probe, "exit", "0", env=env).returncode == 0
    env = environment(programs, **{f"NIX_LD_{programs.system}": programs.loader + "\n\n"})
    result = run(programs.probe, "exit", "0", env=env)
    assert result.returncode == 126
    assert_one_shim_line(result.stderr, f"loader {programs.loader}\\x0a (from NIX_LD_{programs.system}) does not exist")


def test_the_system_specific_loader_wins_over_nix_ld(programs):
    env = environment(programs, NIX_LD="/nonexistent/ld.so")
    assert run(programs.probe, "exit", "0", env=env).returncode == 0
    env = environment(programs, **{f"NIX_LD_{programs.system}": "/nonexistent/ld.so", "NIX_LD": programs.loader})
    result = run(programs.probe, "exit", "0", env=env)
    assert result.returncode == 126
    assert_one_shim_line(result.stderr, "/nonexistent/ld.so", f"from NIX_LD_{programs.system}",
                         f"set NIX_LD_{programs.system} to")


def old_spelling(system: str) -> str:
    """`system` as nix-ld 1.x spelt it in its variables: x86_64-linux, i686-linux."""
    return system.replace("_linux", "-linux")


def test_nix_ld_1_x_spellings_serve_where_2_x_ones_are_not_in_the_environment(programs):
    """NIX_LD_x86_64-linux and NIX_LD_LIBRARY_PATH_x86_64-linux, as environments set for nix-ld
    1.x still carry them, over NIX_LD and NIX_LD_LIBRARY_PATH."""
    old = old_spelling(programs.system)
    env = environment(programs, **{f"NIX_LD_{programs.system}": None, f"NIX_LD_{old}": programs.loader,
                                   "NIX_LD": "/nonexistent/ld.so", f"NIX_LD_LIBRARY_PATH_{old}": programs.lib_b,
                                   "NIX_LD_LIBRARY_PATH": programs.lib_a})
    result = run(programs.uses_library, env=env)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(GREETINGS["lib-b"]))


def test_nix_ld_2_x_spelling_wins_over_1_x_spelling(programs):
    old = old_spelling(programs.system)
    env = environment(programs, **{f"NIX_LD_{old}": "/nonexistent/ld.so", f"NIX_LD_LIBRARY_PATH_{old}": programs.lib_b,
                                   f"NIX_LD_LIBRARY_PATH_{programs.system}": programs.lib_a})
    result = run(programs.uses_library, env=env)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(GREETINGS["lib-a"]))
    # Even empty, 2.x's spelling hides 1.x's: the loader is then NIX_LD's.
    env = environment(programs, **{f"NIX_LD_{programs.system}": "", f"NIX_LD_{old}": "/nonexistent/ld.so",
                                   "NIX_LD": programs.loader, f"NIX_LD_LIBRARY_PATH_{old}": programs.lib_b})
    result = run(programs.uses_library, env=env)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(GREETINGS["lib-b"]))


def test_a_wrong_loader_in_nix_ld_1_x_spelling_is_named_as_spelt(programs):
    old = old_spelling(programs.system)
    env = environment(programs, **{f"NIX_LD_{programs.system}": None, f"NIX_LD_{old}": "/nonexistent/ld.so",
                                   "NIX_LD": programs.loader})
    result = run(programs.probe, "exit", "0", env=env)
    assert (result.returncode, result.stdout) == (126, b"")
    assert_one_shim_line(result.stderr, f"loader /nonexistent/ld.so (from NIX_LD_{old}) does not exist",
                         f"set NIX_LD_{old} to the path of the real loader")


def test_a_needed_library_is_found_in_nix_ld_library_path(programs):
    result = run(programs.uses_library, env=environment(programs, NIX_LD_LIBRARY_PATH=programs.lib_b))
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(GREETINGS["lib-b"]))


def test_the_search_order_is_ld_library_path_then_nix_ld_library_path(programs):
    env = environment(programs, LD_LIBRARY_PATH=programs.lib_a, NIX_LD_LIBRARY_PATH=programs.lib_b)
    assert run(programs.uses_library, env=env).stdout == lines(GREETINGS["lib-a"])
    env = environment(programs, LD_LIBRARY_PATH="/nowhere", NIX_LD_LIBRARY_PATH=f",{programs.lib_b},")
    assert run(programs.uses_library, env=env).stdout == lines(GREETINGS["lib-b"])


def test_the_system_specific_library_path_replaces_the_generic_one(programs):
    env = environment(programs, NIX_LD_LIBRARY_PATH=programs.lib_a,
                      **{f"NIX_LD_LIBRARY_PATH_{programs.system}": programs.lib_b})
    assert run(programs.uses_library, env=env).stdout == lines(GREETINGS["lib-b"])


def test_a_needed_library_is_not_found_without_a_library_path(programs):
    result = run(programs.uses_library, env=environment(programs))
    assert result.returncode == 127
    assert b"libnixldtest.so: cannot open shared object file" in result.stderr


def test_dlopen_after_the_environment_is_put_back_still_searches_the_library_path(programs):
    """The loader keeps the path it read at start-up; the program's environment no longer has it."""
    env = environment(programs, NIX_LD_LIBRARY_PATH=programs.lib_a)
    result = run(programs.dlopens_library, "/usr/bin/env", env=env)
    assert (result.returncode, result.stderr) == (0, b"")
    greeting, _, env_output = result.stdout.partition(b"\n")
    assert greeting == GREETINGS["lib-a"].encode()
    assert b"LD_LIBRARY_PATH" not in env_output.replace(b"NIX_LD_LIBRARY_PATH", b"")


@pytest.mark.parametrize("row", NIX_LD_TABLE)
def test_the_program_and_its_children_see_exactly_the_callers_library_variables(programs, native_probe, row):
    """nix-ld 2.x leaves LD_LIBRARY_PATH="" in row 1, and restores nothing on i686."""
    env = environment(programs, **NIX_LD_TABLE[row])
    result = run(programs.probe, "env", native_probe, "env", env=env)
    assert (result.returncode, result.stderr) == (0, b"")
    seen = variable_lines(env, "LD_LIBRARY_PATH", "NIX_LD_LIBRARY_PATH")
    assert result.stdout == seen + seen  # the program's view, then its child's


def environment_block(program: str, entries: list[bytes]) -> bytes:
    """What `program environ` prints when exec'd with exactly `entries`."""
    result = run_with_block([program, "environ"], entries, TIMEOUT)
    assert (result.returncode, result.stderr) == (0, b"")
    return result.stdout


BLOCKS = {
    "caller-has-ld-library-path": [b"LD_LIBRARY_PATH=/first", b"A=1", b"LD_LIBRARY_PATH=/second"],
    "caller-has-only-nix-ld-variables": [b"NIX_LD_LIBRARY_PATH=/nix/lib", b"B=2"],
    "odd-entries": [b"NIX_LD_LOG=error", b"NO_EQUALS", b"=empty-name", b"X=\xff\xfe", b"X=again", b"EMPTY="],
}


@pytest.mark.parametrize("block", BLOCKS)
def test_the_program_gets_the_callers_environment_block_entry_for_entry(programs, block):
    entries = [os.fsencode(f"NIX_LD_{programs.system}={programs.loader}"), *BLOCKS[block]]
    assert environment_block(programs.probe, entries) == b"".join(entry + b"\0" for entry in entries)


STACK_CHECKS = {"start": b"start ok\n", "auxv": b"auxv ok\n"}


@pytest.mark.parametrize("check", STACK_CHECKS)
@pytest.mark.parametrize("block", ["caller-has-ld-library-path", "caller-has-only-nix-ld-variables"])
def test_the_program_starts_on_the_stack_the_kernel_laid_out(programs, block, check):
    """AT_ENTRY is the program's own again, the stack pointer is 16-byte aligned, and the auxv
    after envp, where start code that walks the stack (Go's runtime, musl) looks for it, is the
    kernel's, pair for pair."""
    env = {os.fsencode(k): os.fsencode(v) for k, v in environment(programs).items()}
    env.update(entry.split(b"=", 1) for entry in BLOCKS[block])
    result = run(programs.probe, check, env=env)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", STACK_CHECKS[check])


@pytest.mark.parametrize("order", ["the-right-one-last", "the-right-one-first"])
def test_with_ld_library_path_given_twice_the_shim_finds_what_the_loader_finds(programs, order):
    """glibc's loader reads every LD_LIBRARY_PATH entry and keeps the last; the program, through
    getenv, sees the first. A program that starts natively starts through the shim, and one
    that does not, does not."""
    given = [b"LD_LIBRARY_PATH=/nowhere", os.fsencode(f"LD_LIBRARY_PATH={programs.lib_a}")]
    if order == "the-right-one-first":
        given.reverse()
    entries = [os.fsencode(f"NIX_LD_{programs.system}={programs.loader}"), *given]
    natively = run_with_block([programs.loader, programs.uses_library], entries, TIMEOUT)
    through_shim = run_with_block([programs.uses_library], entries, TIMEOUT)
    assert (through_shim.returncode, through_shim.stdout) == (natively.returncode, natively.stdout)
    assert natively.returncode == (0 if order == "the-right-one-last" else 127)
    assert environment_block(programs.probe, entries) == b"".join(entry + b"\0" for entry in entries)


def test_the_loaders_file_is_not_left_open_in_the_program(programs):
    for variables in ({}, {"NIX_LD_LIBRARY_PATH": programs.lib_a}):
        result = run(programs.probe, "fds", env=environment(programs, **variables))
        assert (result.returncode, result.stderr, result.stdout) == (0, b"", b"")


def test_library_constructors_see_the_loaders_library_path_and_the_program_the_callers(programs):
    """What is lent is lent to the loader, which runs library constructors before the program's
    first instruction: they see its LD_LIBRARY_PATH. Where nothing is lent, nothing is seen."""
    result = run(programs.constructed, "env", env=environment(programs, NIX_LD_LIBRARY_PATH="/nix/lib"))
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines("constructor: LD_LIBRARY_PATH=/nix/lib", "LD_LIBRARY_PATH unset",
                                  "NIX_LD_LIBRARY_PATH=/nix/lib")


def test_nix_ld_s_default_directory_is_not_lent_where_it_does_not_exist(programs):
    require(not os.path.exists(DEFAULT_LIBRARY_DIR), f"a machine without {DEFAULT_LIBRARY_DIR} (this one has it)",
            how="run the tests where NixOS's nix-ld is not set up")
    result = run(programs.constructed, "env", env=environment(programs))
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines("constructor: LD_LIBRARY_PATH unset", "LD_LIBRARY_PATH unset",
                                  "NIX_LD_LIBRARY_PATH unset")


def with_nix_ld_defaults(programs: Programs, *argv: str) -> subprocess.CompletedProcess:
    """Run `env -i argv...` where nix-ld's defaults exist, as the NixOS module makes them: in
    a user and mount namespace with a tmpfs on /run holding the loader (as the default ld.so)
    and lib-a's libnixldtest.so in the default library directory. With nothing in the
    environment, the shim has no envp entry to lend the loader: it adds entries below the
    kernel's stack."""
    unshare = shutil.which("unshare")
    require(unshare is not None, "unshare is missing", package="util-linux")
    script = ('mount -t tmpfs tmpfs /run && mkdir -p "$1" && cp "$2" "$1/ld.so" && cp "$3" "$1/" && shift 3 '
              '&& exec env -i "$@"')
    return subprocess.run([unshare, "-rm", "/bin/bash", "-c", script, "bash", DEFAULT_LIBRARY_DIR, programs.loader,
                           os.path.join(programs.lib_a, "libnixldtest.so"), *argv],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)


@pytest.mark.parametrize("check", STACK_CHECKS)
def test_with_an_empty_environment_the_defaults_serve_and_the_program_starts_as_the_kernel_laid_it_out(programs, check):
    """With no slot to lend, the entries are added below the kernel's stack: the program starts
    16 bytes lower, with envp ended where the kernel ended it and AT_IGNORE pairs before the
    kernel's auxv."""
    result = with_nix_ld_defaults(programs, programs.uses_library, programs.probe, check)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(GREETINGS["lib-a"]) + STACK_CHECKS[check]


def test_with_an_empty_environment_a_small_stack_holds_as_many_arguments_as_it_does_natively(programs):
    """The kernel lets the arguments take 128 KiB whatever the stack limit (counting 8 bytes a
    pointer, on a 64-bit kernel, for 32-bit programs too); the shim adds no copy of them.
    12,000 one-letter arguments, with 256 KiB of stack (160 KiB for i686's 4-byte pointers):
    natively, and through the shim."""
    limit = 262144 if programs.system == "x86_64_linux" else 163840
    arguments = ["x"] * 12000
    for program in (programs.native_probe, programs.probe):
        result = with_nix_ld_defaults(programs, "prlimit", f"--stack={limit}", program, "cat", *arguments)
        assert (result.returncode, result.stderr, result.stdout) == (0, b"", b""), program


def test_with_an_empty_environment_the_program_and_its_children_get_nothing_added(programs, native_probe):
    result = with_nix_ld_defaults(programs, programs.uses_library, programs.probe, "env", native_probe, "env")
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(GREETINGS["lib-a"]) + variable_lines({}, "LD_LIBRARY_PATH", "NIX_LD_LIBRARY_PATH") * 2
    result = with_nix_ld_defaults(programs, "ONLY=this", programs.probe, "environ")
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", b"ONLY=this\0")


def test_proc_self_exe_and_argv0_are_the_programs(programs, tmp_path):
    link = tmp_path / "link-to-probe"
    link.symlink_to(programs.probe)
    result = subprocess.run([b"chosen-name", b"exe"], executable=link, env=environment(programs),
                            capture_output=True, timeout=TIMEOUT)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(programs.probe))
    result = subprocess.run([b"chosen-name", b"argv"], executable=link, env=environment(programs),
                            capture_output=True, timeout=TIMEOUT)
    assert result.stdout == lines("chosen-name", "argv")


def test_a_program_can_re_execute_itself_through_proc_self_exe(programs):
    """What nixld run cannot offer (the process there is the loader), the shim does."""
    result = run(programs.probe, "reexec", "argv", "again", env=environment(programs))
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(programs.probe, "argv", "again"))


@pytest.mark.parametrize("status", [0, 1, 42, 255])
def test_the_exit_status_is_the_programs(programs, status):
    assert run(programs.probe, "exit", str(status), env=environment(programs)).returncode == status


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGSEGV, signal.SIGKILL])
def test_death_by_a_signal_is_the_programs(programs, signum):
    assert run(programs.probe, "kill", str(int(signum)), env=environment(programs)).returncode == -signum


# ---------------------------------------------------------------------------------------------
# Loaders the shim refuses: one line, 126 (the program exists but cannot be executed), never a crash


def test_a_loader_that_does_not_exist(programs):
    result = run(programs.probe, "exit", "0", env=environment(programs, NIX_LD="/nope/ld.so",
                                                              **{f"NIX_LD_{programs.system}": None}))
    assert result.returncode == 126
    assert_one_shim_line(result.stderr, programs.probe, "/nope/ld.so (from NIX_LD) does not exist", "set NIX_LD to")


BAD_LOADERS = {
    "a directory": (lambda path: path.mkdir(), "is not a regular file"),
    "a FIFO": (lambda path: os.mkfifo(path), "is not a regular file"),
    "a text file": (lambda path: path.write_text("#!/bin/sh\n"), "is not an ELF file"),
    "an empty file": (lambda path: path.write_bytes(b""), "is not an ELF file"),
    "a truncated ELF header": (lambda path: path.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(20)),
                               "truncated ELF header"),
    "a shared library": (lambda path: write_loader(path, entry=0), "a loader is a shared object with an entry point"),
    "an executable": (lambda path: write_loader(path, elf_type=2), "a loader is a shared object with an entry point"),
    "a dynamically linked program": (lambda path: write_elf(path), "it is a dynamically linked program"),
    "another machine's loader": (lambda path: write_loader(path, machine=EM_AARCH64), "another machine's file"),
    "a loader with no code at its entry": (lambda path: write_loader(path), "its entry point is not in its code"),
}


@pytest.mark.parametrize("kind", BAD_LOADERS)
def test_a_loader_that_is_not_one_is_refused_in_one_line(programs, tmp_path, kind):
    make, fault = BAD_LOADERS[kind]
    loader = tmp_path / "loader"
    make(loader)
    if programs.system == "i686_linux" and kind in ("a shared library", "an executable", "another machine's loader",
                                                     "a loader with no code at its entry", "a dynamically linked program"):
        fault = "it is 64-bit, the program 32-bit"
    result = run(programs.probe, "exit", "0", env=environment(programs, **{f"NIX_LD_{programs.system}": str(loader)}))
    assert result.returncode == 126 and result.stdout == b""
    assert_one_shim_line(result.stderr, programs.probe, str(loader), fault)


def test_another_machines_loader_from_nix_ld_is_answered_with_the_systems_own_variable(programs):
    """NIX_LD serves the machine's own programs: a 32-bit program handed the 64-bit loader is
    told to set NIX_LD_i686_linux, not NIX_LD, as `nixld run` tells it."""
    other = next(loader for system, loader in LOADERS.items() if system != programs.system)
    env = environment(programs, **{f"NIX_LD_{programs.system}": None, "NIX_LD": other})
    result = run(programs.probe, "exit", "0", env=env)
    assert result.returncode == 126 and result.stdout == b""
    line = assert_one_shim_line(result.stderr, other, "(from NIX_LD)")
    assert line.endswith(f": set NIX_LD_{programs.system} to the path of the real loader of {programs.system} "
                         "programs (NIX_LD names another machine's)\n")


def test_a_loader_without_execute_permission_is_refused_as_the_kernel_refuses_it(programs, tmp_path):
    loader = tmp_path / "ld.so"
    shutil.copy(programs.loader, loader)
    loader.chmod(0o644)
    result = run(programs.probe, "exit", "0", env=environment(programs, **{f"NIX_LD_{programs.system}": str(loader)}))
    assert result.returncode == 126 and result.stdout == b""
    assert_one_shim_line(result.stderr, str(loader), "is not executable")


def test_a_loader_on_a_noexec_mount_is_refused_as_the_kernel_refuses_it(programs):
    unshare = shutil.which("unshare")
    require(unshare is not None, "unshare is missing", package="util-linux")
    script = ('mount -t tmpfs -o noexec tmpfs /mnt && cp "$1" /mnt/ld.so && shift && '
              'NIX_LD_x86_64_linux=/mnt/ld.so NIX_LD_i686_linux=/mnt/ld.so exec "$@"')
    result = subprocess.run([unshare, "-rm", "/bin/bash", "-c", script, "bash", programs.loader, programs.probe, "exit",
                             "0"], capture_output=True, timeout=TIMEOUT)
    assert result.returncode == 126 and result.stdout == b""
    assert_one_shim_line(result.stderr, "/mnt/ld.so", "is not executable (no execute permission, or on a noexec mount)")


def test_a_read_only_segments_zero_fill_is_left_as_the_kernel_leaves_it(programs, tmp_path):
    """The loader's first (read-only) PT_LOAD told to take fewer bytes from the file than its
    memory holds: the kernel leaves the rest of that page as the file has it (it zeroes only in
    writable segments), and the loader, whose own relocations are there, runs. So it must
    through the shim. (Found by test_shim_fuzz.py: the shim used to zero the page.)"""
    loader = tmp_path / "ld.so"
    loader.write_bytes(with_a_shorter_read_only_file_part(Path(programs.loader).read_bytes()))
    loader.chmod(0o755)
    flags = ["-m32"] if programs.system == "i686_linux" else []
    by_kernel = tmp_path / "by-kernel"
    compile_all([[*flags, "-o", str(by_kernel), str(PROGRAMS / "probe.c"), f"-Wl,--dynamic-linker={loader}"]])
    env = environment(programs, **{f"NIX_LD_{programs.system}": str(loader)})
    assert run(by_kernel, "exit", "3", env=env).returncode == 3
    result = run(programs.probe, "exit", "3", env=env)
    assert (result.returncode, result.stderr) == (3, b"")


def with_a_shorter_read_only_file_part(loader: bytes) -> bytes:
    """`loader` whose first PT_LOAD (read-only, ending inside a page in glibc's ld.so) has its
    file size rounded down to 256 bytes, its memory size kept."""
    data = bytearray(loader)
    at, first = load_headers(data)[0]
    assert first["filesz"] == first["memsz"] and first["filesz"] % 256 and not first["flags"] & 2, "not glibc's ld.so"
    first["filesz"] &= -256
    rewrite_program_header(data, at, first)
    return bytes(data)


def test_a_loader_of_the_other_class_is_refused(programs):
    other = LOADERS["i686_linux" if programs.system == "x86_64_linux" else "x86_64_linux"]
    require(os.path.exists(other), f"{other} is missing", package="libc6-i386")
    result = run(programs.probe, "exit", "0", env=environment(programs, **{f"NIX_LD_{programs.system}": other}))
    assert result.returncode == 126
    assert_one_shim_line(result.stderr, other, "is not an ELF program loader for this program")


def test_a_static_pie_program_is_not_a_loader(x86_64_programs, static_pie_probe):
    result = run(x86_64_programs.probe, "exit", "0", env=environment(x86_64_programs, NIX_LD_x86_64_linux=static_pie_probe))
    assert result.returncode == 126
    assert_one_shim_line(result.stderr, static_pie_probe, "it is a static-pie program")


# ---------------------------------------------------------------------------------------------
# Set-user-ID programs: the caller's environment chooses nothing


def marking_loader(directory: Path, mark: Path) -> str:
    """A stand-in "loader" (a shared object with an entry point and no interpreter, as a loader
    is) that creates `mark` and exits 0: proof of having been run."""
    source = directory / "marking_loader.c"
    source.write_text(
        "static long call(long n, long a, long b, long c) {\n"
        "    long r; __asm__ volatile(\"syscall\" : \"=a\"(r) : \"a\"(n), \"D\"(a), \"S\"(b), \"d\"(c)"
        " : \"rcx\", \"r11\", \"memory\"); return r; }\n"
        f"static const char mark[] = \"{mark}\";\n"
        "void start(void) { call(257, -100, (long)mark, 0101); call(231, 0, 0, 0); }\n")
    loader = directory / "marking-loader.so"
    compile_all([["-shared", "-fPIC", "-nostdlib", "-fno-stack-protector", "-Wl,-e,start", "-o", str(loader),
                   str(source)]])
    return str(loader)


@pytest.fixture
def set_user_id_probe(tmp_path) -> str:
    """The probe, owned by nobody with the set-user-ID bit, in a directory anyone may enter
    (with its own copy of the shim as interpreter): started by root, it runs with AT_SECURE
    set. Needs root, as CI has."""
    require(os.geteuid() == 0, "root, to give a program to nobody with the set-user-ID bit",
            how="run the tests as root, as .ci/run does")
    directory = Path(tempfile.mkdtemp(prefix="nixld-setuid-", dir="/tmp"))
    os.chmod(directory, 0o755)
    shim = directory / "shim"
    shutil.copy(nixld.shim_path(), shim)
    program = directory / "probe"
    compile_all([["-o", str(program), str(PROGRAMS / "probe.c"), f"-Wl,--dynamic-linker={shim}"]])
    os.chown(program, NOBODY, NOBODY)
    os.chmod(program, 0o4755)
    yield str(program)
    shutil.rmtree(directory)


def test_the_marking_loader_is_run_when_nix_ld_names_it(x86_64_programs, tmp_path):
    mark = tmp_path / "mark"
    loader = marking_loader(tmp_path, mark)
    result = run(x86_64_programs.probe, "exit", "3", env=environment(x86_64_programs, NIX_LD_x86_64_linux=loader))
    assert result.returncode == 0 and mark.exists()


def test_a_set_user_id_program_ignores_the_loader_its_caller_names(set_user_id_probe, tmp_path):
    mark = tmp_path / "mark"
    loader = marking_loader(tmp_path, mark)
    env = {"PATH": "/usr/bin:/bin", "NIX_LD": loader, "NIX_LD_x86_64_linux": loader, "NIX_LD_LOG": "info"}
    result = run(set_user_id_probe, "exit", "0", env=env)
    assert not mark.exists()
    assert result.returncode == 126
    assert result.stderr == lines(SECURE_MODE_NO_DEFAULT_LOADER)


# What the shim says, and all it says, when it starts a set-user-ID program on a machine without
# nix-ld's default loader: nothing the caller chose comes back.
SECURE_MODE_NO_DEFAULT_LOADER = (
    f"nixld shim: a set-user-ID or set-group-ID program: loader {DEFAULT_LOADER} (nix-ld's default) does not "
    "exist; set-user-ID and set-group-ID programs start only through nix-ld's default loader (on NixOS, "
    "programs.nix-ld.enable = true provides it)")


def test_a_set_user_id_program_run_by_its_owner_is_not_secure(set_user_id_probe, tmp_path):
    """AT_SECURE is about privilege gained: as nobody, nobody's program takes NIX_LD."""
    env = {"PATH": "/usr/bin:/bin", "NIX_LD": LOADERS["x86_64_linux"]}
    result = run(set_user_id_probe, "exit", "5", env=env, user=NOBODY, group=NOBODY, extra_groups=[])
    assert (result.returncode, result.stderr) == (5, b"")


# ---------------------------------------------------------------------------------------------
# What the shim says


def test_at_info_the_shim_says_which_loader_and_library_path(programs):
    env = environment(programs, NIX_LD_LOG="info", LD_LIBRARY_PATH="/some:/some", NIX_LD_LIBRARY_PATH="/nix,/some")
    result = run(programs.probe, "exit", "0", env=env)
    assert result.returncode == 0
    assert_one_shim_line(result.stderr, programs.probe, f"loader {programs.loader} (from NIX_LD_{programs.system})",
                         "library path /some:/nix (LD_LIBRARY_PATH, then from NIX_LD_LIBRARY_PATH)")


def test_an_unknown_log_level_is_named_and_warn_is_used(programs):
    result = run(programs.probe, "exit", "0", env=environment(programs, NIX_LD_LOG="loud"))
    assert result.returncode == 0
    assert_one_shim_line(result.stderr, "NIX_LD_LOG='loud' is not one of error, warn, info, debug, trace")


def message_limits() -> tuple[int, int]:
    """NIXLD_LINE_LIMIT and NIXLD_VALUE_LIMIT, as nixld/shim/message.h sets them."""
    header = (PROJECT / "nixld" / "shim" / "message.h").read_text()
    return tuple(int(re.search(rf"#define {name} (\d+)", header).group(1))
                 for name in ("NIXLD_LINE_LIMIT", "NIXLD_VALUE_LIMIT"))


def assert_one_bounded_line(stderr: bytes, *culprits: str) -> str:
    """stderr is one line from the shim, within the line limit, with no control character
    before its newline, naming every culprit; returns it."""
    line_limit, _ = message_limits()
    assert len(stderr) <= line_limit, len(stderr)
    assert not [byte for byte in stderr[:-1] if byte < 0x20 or byte == 0x7f], stderr
    return assert_one_shim_line(stderr, *culprits)


def cut_value(value: str) -> tuple[str, str]:
    """What a line shows of a long ASCII value without control characters: its start and its
    end, each up to half the value limit, around "..."."""
    _, value_limit = message_limits()
    half = (value_limit - 3) // 2
    return value[:half] + "...", "..." + value[-half:]


def test_a_long_nix_ld_is_shown_cut_in_one_bounded_line(programs):
    for loader in ("/x" * 2000, "/y" * 3000):  # does not exist; too long to open
        result = run(programs.probe, "exit", "0", env=environment(programs, **{f"NIX_LD_{programs.system}": loader}))
        assert result.returncode == 126 and result.stdout == b""
        assert_one_bounded_line(result.stderr, *cut_value(loader), f"set NIX_LD_{programs.system} to the path")


def test_a_long_program_path_is_shown_cut_in_one_bounded_line(programs, tmp_path):
    """AT_EXECFN, the path the caller exec'd (here 3,900 bytes), begins every line."""
    directory = tmp_path
    while len(os.fsencode(directory)) < 3700:
        directory = directory / ("d" * 200)
    directory.mkdir(parents=True)
    program = directory / "probe"
    program.symlink_to(programs.probe)
    env = environment(programs, **{f"NIX_LD_{programs.system}": None})
    result = run(program, "exit", "0", env=env)
    assert result.returncode == 126 and result.stdout == b""
    assert_one_bounded_line(result.stderr, *cut_value(str(program)), "does not exist")


def test_an_unknown_log_level_of_any_length_is_shown_cut(programs):
    level = "z" * 1100
    result = run(programs.probe, "exit", "0", env=environment(programs, NIX_LD_LOG=level))
    assert (result.returncode, result.stdout) == (0, b"")
    assert_one_bounded_line(result.stderr, *cut_value(level), "is not one of error, warn")


def test_at_info_a_long_library_path_is_shown_cut_and_the_program_keeps_its_environment(programs):
    nix_dirs = ":".join(f"/nix/store/{index:032d}-lib/lib" for index in range(120))
    callers = ":".join(f"/home/user/lib{index}" for index in range(200))
    entries = [os.fsencode(f"NIX_LD_{programs.system}={programs.loader}"), b"NIX_LD_LOG=info",
               os.fsencode(f"NIX_LD_LIBRARY_PATH={nix_dirs}"), os.fsencode(f"LD_LIBRARY_PATH={callers}")]
    result = run_with_block([programs.probe, "environ"], entries, TIMEOUT)
    assert (result.returncode, result.stdout) == (0, b"".join(entry + b"\0" for entry in entries))
    joined = callers + ":" + nix_dirs
    assert_one_bounded_line(result.stderr, *cut_value(joined), "(LD_LIBRARY_PATH, then from NIX_LD_LIBRARY_PATH)")


def test_control_characters_in_a_value_are_escaped_so_the_message_stays_one_line(programs):
    result = run(programs.probe, "exit", "0", env=environment(programs, NIX_LD="/no\nsuch\x1b[31m\x7f",
                                                              **{f"NIX_LD_{programs.system}": None}))
    assert result.returncode == 126
    assert_one_bounded_line(result.stderr, "loader /no\\x0asuch\\x1b[31m\\x7f (from NIX_LD) does not exist")


# ---------------------------------------------------------------------------------------------
# The shim started as a program: the loader run by hand


def test_run_with_no_arguments_the_shim_lists_the_variables_it_honours(programs):
    result = run(programs.shim, env=environment(programs))
    assert (result.returncode, result.stderr) == (0, b"")
    for name in (f"NIX_LD_{programs.system}", "NIX_LD", f"NIX_LD_LIBRARY_PATH_{programs.system}",
                 "NIX_LD_LIBRARY_PATH", "NIX_LD_LOG", DEFAULT_LOADER, DEFAULT_LIBRARY_DIR):
        assert name.encode() in result.stdout
    assert result.stdout.endswith(lines(f"Now: loader {programs.loader} (from NIX_LD_{programs.system})"))


@pytest.mark.parametrize("option", ["--help", "-h"])
def test_run_with_help_the_shim_says_what_it_is_how_it_is_used_and_what_it_reads(programs, option):
    """Its own usage, in lines within the message limit, where no loader is set (the usage is not
    the loader's help, nor a complaint about a program named --help)."""
    result = run(programs.shim, option, env={})
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == run(programs.shim, env={}).stdout  # what it says with no argument
    text = result.stdout.decode()
    assert text.startswith("usage: SHIM PROGRAM [ARG]...\n")
    assert f"a nix-ld-compatible program interpreter for {programs.system} programs" in " ".join(text.split())
    assert "interpreter path" in text
    old = old_spelling(programs.system)
    words = set(re.findall(r"[\w.-]+", text))
    assert {f"NIX_LD_{programs.system}", f"NIX_LD_{old}", "NIX_LD", f"NIX_LD_LIBRARY_PATH_{programs.system}",
            f"NIX_LD_LIBRARY_PATH_{old}", "NIX_LD_LIBRARY_PATH", "NIX_LD_LOG"} <= words
    assert text.endswith(f"Now: loader {DEFAULT_LOADER} (nix-ld's default)\n")
    line_limit, _ = message_limits()
    assert max(len(line) for line in result.stdout.splitlines(keepends=True)) <= line_limit


@pytest.mark.parametrize("option", ["--version", "-V"])
def test_run_with_version_the_shim_says_its_own_version_not_the_loaders(programs, option):
    for env in ({}, environment(programs)):
        result = run(programs.shim, option, env=env)
        assert (result.returncode, result.stderr, result.stdout) == (
            0, b"", lines(f"nixld shim {nixld.__version__} for {programs.system} programs"))


def test_run_with_a_program_the_shim_starts_it_as_the_loader_would_by_hand(programs, native_probe):
    env = environment(programs, NIX_LD_LIBRARY_PATH=programs.lib_b)
    result = run(programs.shim, programs.uses_library, native_probe, "env", env=env)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(GREETINGS["lib-b"]) + variable_lines(env, "LD_LIBRARY_PATH", "NIX_LD_LIBRARY_PATH")


def test_run_by_hand_with_no_loader_the_shim_explains(programs):
    env = environment(programs, **{f"NIX_LD_{programs.system}": None})
    result = run(programs.shim, programs.probe, "exit", "0", env=env)
    assert result.returncode == 126
    assert_one_shim_line(result.stderr, programs.probe, DEFAULT_LOADER, "does not exist")


# ---------------------------------------------------------------------------------------------
# aarch64: the shim's third arch/ layer, cross-compiled and run under qemu's user-mode emulator


AARCH64_ROOT = "/usr/aarch64-linux-gnu/lib"  # Debian's libc6-arm64-cross
AARCH64_LOADER = f"{AARCH64_ROOT}/ld-linux-aarch64.so.1"


def aarch64_compiler() -> list[str] | None:
    """Debian's aarch64 cross gcc, or clang targeting aarch64 (gcc-aarch64-linux-gnu cannot be
    installed beside gcc-multilib; clang can, with the aarch64 libc and libgcc packages)."""
    if shutil.which("aarch64-linux-gnu-gcc"):
        return ["aarch64-linux-gnu-gcc"]
    if shutil.which("clang") and shutil.which("aarch64-linux-gnu-ld") and os.path.exists(AARCH64_LOADER):
        return ["clang", "--target=aarch64-linux-gnu"]
    return None


@pytest.fixture(scope="session")
def aarch64_programs(tmp_path_factory) -> Programs:
    """The aarch64 shim, built with Debian's cross compiler exactly as setup.py builds a shim,
    and the test programs linked with it; qemu-aarch64 runs them (the shim maps the loader and
    hands over under emulation as it would on an aarch64 kernel)."""
    compiler = aarch64_compiler()
    require(compiler is not None, "a C compiler for aarch64 with its libc",
            package="clang, binutils-aarch64-linux-gnu, libc6-dev-arm64-cross and libgcc-12-dev-arm64-cross")
    require(shutil.which("qemu-aarch64") is not None, "qemu's user-mode emulator for aarch64", package="qemu-user")
    root = tmp_path_factory.mktemp("shim-aarch64")
    shim = str(root / shim_name("aarch64_linux"))
    assert build_shim(compiler, "aarch64_linux", shim) is None
    interpreter = f"-Wl,--dynamic-linker={shim}"
    lib_a = root / "lib-a"
    lib_a.mkdir()
    jobs = [["-shared", "-fPIC", f'-DGREETING="{GREETINGS["lib-a"]}"', "-o", str(lib_a / "libnixldtest.so"),
             str(PROGRAMS / "nixldtest.c")],
            ["-o", str(root / "probe"), str(PROGRAMS / "probe.c"), interpreter],
            ["-o", str(root / "native-probe"), str(PROGRAMS / "probe.c")]]
    compile_all(jobs, compiler=compiler)
    compile_all([["-o", str(root / "uses-library"), str(PROGRAMS / "uses_library.c"), f"-L{lib_a}", "-lnixldtest",
                  interpreter]], compiler=compiler)
    return Programs("aarch64_linux", shim, AARCH64_LOADER, str(root / "probe"), str(root / "uses-library"), None,
                    str(lib_a), None, str(root / "native-probe"))


def aarch64_environment(programs: Programs, **variables) -> dict:
    """environment(), plus the directory of the aarch64 libc in NIX_LD_LIBRARY_PATH_aarch64_linux,
    which replaces NIX_LD_LIBRARY_PATH for the shim and leaves it to the caller."""
    return environment(programs, NIX_LD_LIBRARY_PATH_aarch64_linux=AARCH64_ROOT, **variables)


def test_the_aarch64_shim_needs_no_relocation(aarch64_programs):
    with open(aarch64_programs.shim, "rb") as stream:
        shim = ELFFile(stream)
        assert (shim.header.e_machine, shim.header.e_type) == ("EM_AARCH64", "ET_DYN")
    assert relocation_bytes(aarch64_programs.shim) == 0


def test_the_aarch64_hand_over_jumps_through_a_register_it_does_not_zero(aarch64_programs, tmp_path):
    """nixld_hand_over and the trampoline zero x0, x29 and x30 before they branch: the branch
    target must be in none of them (the compiler chooses where `entry` lives, unless told)."""
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    require(objdump is not None, "aarch64-linux-gnu-objdump", package="binutils-aarch64-linux-gnu")
    launcher = str(tmp_path / "launcher")
    assert build_shim(aarch64_compiler(), "aarch64_linux", launcher, "launcher") is None
    for program, hand_overs in ((aarch64_programs.shim, 2), (launcher, 1)):
        listing = subprocess.run([objdump, "-d", program], capture_output=True, text=True, check=True).stdout
        instructions = [[part.strip() for part in line.split("\t")[2:4]] for line in listing.splitlines()
                        if line.count("\t") >= 3]
        branches = [operands for index, (mnemonic, operands) in enumerate(instructions)
                    if mnemonic == "br" and ["mov", "x30, #0x0"] in instructions[max(0, index - 3):index]]
        assert len(branches) == hand_overs, (program, branches)
        assert not [target for target in branches if target in ("x0", "x29", "x30")], branches


def test_an_aarch64_program_runs_through_the_shim_and_finds_its_library(aarch64_programs):
    programs = aarch64_programs
    result = run("qemu-aarch64", programs.probe, "argv", "one", "two words", env=aarch64_environment(programs))
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(programs.probe, "argv", "one", "two words")
    env = environment(programs, NIX_LD_LIBRARY_PATH_aarch64_linux=f"{AARCH64_ROOT}:{programs.lib_a}")
    result = run("qemu-aarch64", programs.uses_library, env=env)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(GREETINGS["lib-a"]))


def test_an_aarch64_program_reads_nix_ld_1_x_spellings(aarch64_programs):
    programs = aarch64_programs
    old_spellings = {"NIX_LD_aarch64-linux": AARCH64_LOADER,
                     "NIX_LD_LIBRARY_PATH_aarch64-linux": f"{AARCH64_ROOT}:{programs.lib_a}"}
    env = environment(programs, NIX_LD_aarch64_linux=None, **old_spellings)
    result = run("qemu-aarch64", programs.uses_library, env=env)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", lines(GREETINGS["lib-a"]))


@pytest.mark.parametrize("row", NIX_LD_TABLE)
def test_an_aarch64_program_and_its_children_see_exactly_the_callers_library_variables(aarch64_programs, native_probe,
                                                                                      row):
    env = aarch64_environment(aarch64_programs, **NIX_LD_TABLE[row])
    result = run("qemu-aarch64", aarch64_programs.probe, "env", native_probe, "env", env=env)
    assert (result.returncode, result.stderr) == (0, b"")
    seen = variable_lines(env, "LD_LIBRARY_PATH", "NIX_LD_LIBRARY_PATH")
    assert result.stdout == seen + seen


@pytest.mark.parametrize("block", ["caller-has-ld-library-path", "caller-has-only-nix-ld-variables"])
def test_an_aarch64_program_gets_the_callers_environment_block_and_starts_as_the_kernel_laid_it_out(aarch64_programs,
                                                                                                 block):
    entries = [os.fsencode(f"NIX_LD_aarch64_linux={AARCH64_LOADER}"),
               os.fsencode(f"NIX_LD_LIBRARY_PATH_aarch64_linux={AARCH64_ROOT}"), *BLOCKS[block]]
    def run_under_qemu(*argv: str) -> subprocess.CompletedProcess:
        return run_with_block(["/usr/bin/qemu-aarch64", *argv], entries, TIMEOUT)

    # The oracle: the same probe with the aarch64 loader as its interpreter. (qemu passes on an
    # environment of its own making: one entry per name, in reverse order.)
    native = run_under_qemu("-L", "/usr/aarch64-linux-gnu", aarch64_programs.native_probe, "environ")
    assert native.returncode == 0 and b"NIX_LD_aarch64_linux=" + os.fsencode(AARCH64_LOADER) + b"\0" in native.stdout
    through_shim = run_under_qemu(aarch64_programs.probe, "environ")
    assert (through_shim.returncode, through_shim.stderr, through_shim.stdout) == (0, b"", native.stdout)
    start = run_under_qemu(aarch64_programs.probe, "start")
    assert (start.returncode, start.stderr, start.stdout) == (0, b"", b"start ok\n")


def test_an_aarch64_program_with_an_x86_64_loader_is_refused_in_one_line(aarch64_programs):
    env = aarch64_environment(aarch64_programs, NIX_LD_aarch64_linux=LOADERS["x86_64_linux"])
    result = run("qemu-aarch64", aarch64_programs.probe, "exit", "0", env=env)
    assert result.returncode == 126
    assert_one_shim_line(result.stderr, aarch64_programs.probe, LOADERS["x86_64_linux"], "another machine's file")


def test_an_aarch64_launcher_starts_an_aarch64_program_as_nixld_run_would(aarch64_programs, tmp_path):
    """nixld wrap's launcher for aarch64, built as setup.py builds it there, with settings
    written as nixld wrap writes them: it maps the aarch64 loader itself, under qemu."""
    launcher = str(tmp_path / "launcher")
    assert build_shim(aarch64_compiler(), "aarch64_linux", launcher, "launcher") is None
    assert relocation_bytes(launcher) == 0
    wrapper = tmp_path / "wrapped"
    settings = wrap.WrapSettings(AARCH64_LOADER.encode(), (AARCH64_ROOT.encode(),),
                                 aarch64_programs.native_probe.encode(), None, True)
    wrapper.write_bytes(wrap.launcher_bytes(settings, launcher))
    wrapper.chmod(0o755)
    result = run("qemu-aarch64", wrapper, "argv", "x", env={"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": "/x"})
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == lines(wrapper, "argv", "x")
    result = run("qemu-aarch64", wrapper, "env", env={"PATH": "/usr/bin:/bin"})
    assert result.stdout == lines("LD_LIBRARY_PATH unset", "NIX_LD_LIBRARY_PATH unset")


MUSL_LOADER = "/lib/ld-musl-x86_64.so.1"


def test_a_musl_program_runs_through_the_shim_with_musls_loader(tmp_path, native_probe):
    """musl's start code walks past envp to find auxv, and musl's loader keeps no parsed path:
    both see what the kernel would have given them."""
    require(shutil.which("musl-gcc") is not None and os.path.exists(MUSL_LOADER), "musl's compiler and loader",
            package="musl-tools")
    program = tmp_path / "musl-probe"
    compile_all([["-o", str(program), str(PROGRAMS / "probe.c"), f"-Wl,--dynamic-linker={nixld.shim_path()}"]],
                compiler=["musl-gcc"])
    for variables in ({}, {"NIX_LD_LIBRARY_PATH": str(tmp_path)}, {"LD_LIBRARY_PATH": "/x"}):
        env = explicit_environment(MUSL_LOADER, **variables)
        result = run(program, "start", env=env)
        assert (result.returncode, result.stderr, result.stdout) == (0, b"", b"start ok\n")
        result = run(program, "env", native_probe, "env", env=env)
        assert result.stdout == variable_lines(env, "LD_LIBRARY_PATH", "NIX_LD_LIBRARY_PATH") * 2


def test_the_library_path_reaches_musls_loader_whichever_ld_library_path_entry_it_reads(tmp_path):
    """musl's loader reads the first LD_LIBRARY_PATH entry, glibc's the last: the shim lends
    both, so its path (the last entry's directories, then nix-ld's) reaches either."""
    require(shutil.which("musl-gcc") is not None and os.path.exists(MUSL_LOADER), "musl's compiler and loader",
            package="musl-tools")
    library_dir = tmp_path / "lib"
    library_dir.mkdir()
    compile_all([["-shared", "-fPIC", '-DGREETING="musl libnixldtest"', "-o", str(library_dir / "libnixldtest.so"),
                  str(PROGRAMS / "nixldtest.c")]], compiler=["musl-gcc"])
    program = tmp_path / "musl-uses-library"
    compile_all([["-o", str(program), str(PROGRAMS / "uses_library.c"), f"-L{library_dir}", "-lnixldtest",
                  f"-Wl,--dynamic-linker={nixld.shim_path()}"]], compiler=["musl-gcc"])
    entries = [os.fsencode(f"NIX_LD={MUSL_LOADER}"), os.fsencode(f"NIX_LD_LIBRARY_PATH={library_dir}"),
               b"LD_LIBRARY_PATH=/nowhere-first", b"LD_LIBRARY_PATH=/nowhere-last"]
    result = run_with_block([program], entries, TIMEOUT)
    assert (result.returncode, result.stderr, result.stdout) == (0, b"", b"musl libnixldtest\n")
