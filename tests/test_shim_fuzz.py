"""The real shim binary, fuzzed end to end: a program started through it, with a damaged copy of
the real loader as NIX_LD and a hostile environment, against the same program with that copy
as its interpreter, started by the kernel.

Whose fault a crash or a hang is, is told by the shim itself: run with NIX_LD_LOG=info, it
says its one info line after it has checked and mapped the loader, just before it jumps into
it. A process that dies or hangs before that line died or hung in nixld's code: a failure,
whatever the loader's bytes. After it, the damaged loader runs its own code; then the kernel is
the oracle: where the kernel starts the program and runs it to its end, so does the shim, or
it refuses the loader in one line.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import namedtuple
from pathlib import Path

import pytest
from conftest import I386_LOADER, PROGRAMS, compile_all, require, why_gcc_cannot_build_32_bit
from environments import names, values
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_shim import built_shim

TIMEOUT = 3
LOADERS = {"x86_64_linux": "/lib64/ld-linux-x86-64.so.2", "i686_linux": I386_LOADER}


class Subjects(namedtuple("Subjects", "system loader damaged by_kernel by_shim")):
    """What the fuzz runs; shown by its system alone (the loader's bytes are 200 KiB)."""

    def __repr__(self) -> str:
        return f"Subjects({self.system})"

Outcome = namedtuple("Outcome", "status stdout stderr")
HUNG = "hung"
REFUSED_BY_THE_KERNEL = "refused by the kernel"


@pytest.fixture(scope="module", params=list(LOADERS))
def subjects(request, tmp_path_factory) -> Subjects:
    """The probe linked twice: with the damaged loader's path as its interpreter, and with the
    shim; `damaged` is where each example writes its loader."""
    system = request.param
    if system == "i686_linux":
        why = why_gcc_cannot_build_32_bit()
        require(why is None, f"gcc cannot build 32-bit programs ({why})", package="gcc-multilib")
        require(os.path.exists(I386_LOADER), f"the i386 loader {I386_LOADER} is missing", package="libc6-i386")
    root = tmp_path_factory.mktemp(f"fuzz-{system}")
    flags = ["-m32"] if system == "i686_linux" else []
    damaged = root / "ld.so"
    compile_all([[*flags, "-o", str(root / "by-kernel"), str(PROGRAMS / "probe.c"), f"-Wl,--dynamic-linker={damaged}"],
                 [*flags, "-o", str(root / "by-shim"), str(PROGRAMS / "probe.c"),
                  f"-Wl,--dynamic-linker={built_shim(system)}"]])
    return Subjects(system, Path(LOADERS[system]).read_bytes(), damaged, str(root / "by-kernel"), str(root / "by-shim"))


def run(program: str, env: dict) -> Outcome:
    """The program's `environ` output and status, HUNG after TIMEOUT seconds (the process
    group killed), REFUSED_BY_THE_KERNEL when execve fails."""
    try:
        process = subprocess.Popen([program, "environ"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
    except OSError:
        return Outcome(REFUSED_BY_THE_KERNEL, b"", b"")
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        return Outcome(HUNG, stdout, stderr)
    return Outcome(process.returncode, stdout, stderr)


def shim_lines(stderr: bytes) -> list[bytes]:
    return [line for line in stderr.splitlines(keepends=True) if line.startswith(b"nixld shim: ")]


environments = st.dictionaries(names.filter(lambda name: not name.startswith((b"NIX_LD", b"LD_PRELOAD", b"LD_AUDIT"))),
                               values, max_size=6)


@settings(max_examples=250)
@given(changes=st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), max_size=8),
       cut=st.none() | st.tuples(st.sampled_from(["bytes kept", "bytes cut off"]), st.integers(0, 65536)),
       extra=environments, spelling=st.sampled_from(["NIX_LD", "nix-ld 2.x's", "nix-ld 1.x's"]))
@example(changes=[], cut=None, extra={b"LD_LIBRARY_PATH": b"/x", b"A": b"\x1b[2J" * 100}, spelling="NIX_LD")
def test_a_damaged_loader_or_a_hostile_environment_never_crashes_nor_hangs_the_shim(subjects, changes, cut, extra,
                                                                                   spelling):
    """`changes` to the first KiB (the ELF header, the program headers, the start of the
    dynamic symbols), the file cut near its start or its end (where the writable segment
    ends), any environment, and the loader named by NIX_LD or by the system's own variable in
    either spelling (NIX_LD_x86_64_linux, NIX_LD_x86_64-linux)."""
    data = bytearray(subjects.loader)
    for offset, value in changes:
        data[offset] = value
    if cut is not None:
        how, count = cut
        data = data[:count] if how == "bytes kept" else data[:max(0, len(data) - count)]
    subjects.damaged.write_bytes(bytes(data))
    subjects.damaged.chmod(0o755)
    variable = {"NIX_LD": "NIX_LD", "nix-ld 2.x's": f"NIX_LD_{subjects.system}",
                "nix-ld 1.x's": f"NIX_LD_{subjects.system.replace('_linux', '-linux')}"}[spelling]
    env = {**extra, variable.encode(): bytes(subjects.damaged), b"NIX_LD_LOG": b"info"}

    shim = run(subjects.by_shim, env)
    said = shim_lines(shim.stderr)
    assert all(line.endswith(b"\n") and len(line) <= 2048 for line in said), said
    handed_over = any(b" library path " in line for line in said)
    if not handed_over:
        # Refused: one line, the status of a program that exists but cannot be executed; nothing else.
        assert (shim.status, shim.stdout, len(said)) == (126, b"", 1), shim
        return
    kernel = run(subjects.by_kernel, env)
    if kernel.status == 0:
        assert (shim.status, shim.stdout) == (0, kernel.stdout), (shim, kernel)
