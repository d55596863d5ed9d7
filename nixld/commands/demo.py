"""`nixld demo`: a foreign binary, built with this package, fails plainly and then runs.

The binary (`_demo/bin/hello-foreign`) names an interpreter that exists on no machine and
needs a library (`_demo/lib/libnixld-demo.so`) that no loader searches by default.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

from nixld import config, elf
from nixld.console import write_output
from nixld.errors import NixLdError, UsageError, display
from nixld.loader import run_foreign

_DEMO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_demo")
PROGRAM = os.fsencode(os.path.join(_DEMO_DIR, "bin", "hello-foreign"))
LIBRARY_DIR = os.fsencode(os.path.join(_DEMO_DIR, "lib"))

USAGE = """\
usage: nixld demo

Show a foreign binary failing as on NixOS (its interpreter exists nowhere), then running through
`nixld run`, with NIX_LD, or this Python's own loader when NIX_LD is unset.

exit status: the foreign program's own; 1 when this nixld has no demo built.
"""


def main(args: list[str]) -> int:
    """Show the failure and the fix; returns the foreign program's exit status."""
    if args in (["-h"], ["--help"]):
        write_output(USAGE)
        return 0
    if args:
        raise UsageError("demo takes no arguments")
    if not os.path.exists(PROGRAM):
        if os.path.exists(os.path.join(os.path.dirname(_DEMO_DIR), os.pardir, "setup.py")):
            raise NixLdError(f"{display(PROGRAM)} is missing: this nixld is a source tree that was "
                             "not built; run the installed `nixld`, or Python from outside the tree")
        raise NixLdError(f"{display(PROGRAM)} is missing: this nixld was installed without its "
                         "demo; reinstall it from source with a C compiler present")
    header = elf.read_header(PROGRAM)
    interpreter = header.interpreter
    shown = shlex.quote(display(PROGRAM))

    _say(f"# A binary built elsewhere: its program interpreter is {display(interpreter)}")
    _say(f"$ {shown} one two")
    try:
        subprocess.run([PROGRAM, b"one", b"two"], check=False)
    except OSError as error:
        _say(f"fails: {error.strerror}: the kernel cannot find {display(interpreter)}, "
             "just as NixOS cannot find /lib64/ld-linux-x86-64.so.2\n")
    else:
        _say("(it ran directly: this machine has that interpreter, which is unexpected)\n")

    env = dict(os.environb)
    loader, source = config.choose_loader(env, header.system)
    if source == "default" and not os.path.exists(loader):
        loader = _own_loader()
        env[b"NIX_LD"] = loader
        _say(f"# NIX_LD is unset: using this Python's own loader, as NixOS's "
             f"programs.nix-ld would\n$ export NIX_LD={shlex.quote(display(loader))}")
    _say(f"$ nixld run -L {shlex.quote(display(LIBRARY_DIR))} {shown} one two")
    completed = run_foreign(PROGRAM, [LIBRARY_DIR], argv=[PROGRAM, b"one", b"two"], env=env)
    # It writes to nixld's stdout, so under `nixld demo | head` SIGPIPE may kill it rather
    # than nixld; its end is then told as a shell tells it, 128 + the signal.
    return completed.returncode if completed.returncode >= 0 else 128 - completed.returncode


def _own_loader() -> bytes:
    """The loader that started this Python: the right one for this machine's libraries."""
    executable = os.fsencode(os.path.realpath(sys.executable))
    interpreter = elf.read_header(executable).interpreter
    if interpreter is None:
        raise NixLdError(f"{display(executable)} is statically linked, so it names no loader "
                         "to borrow: set NIX_LD to your glibc's ld.so and run the demo again")
    return interpreter


def _say(text: str) -> None:
    write_output(text + "\n")  # now: the programs run next write to the same stdout
