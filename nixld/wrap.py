"""`nixld wrap`: a file that starts one foreign program as `nixld run` would, for good.

The binary format is a copy of the compiled launcher (nixld/shim/launcher.c) with the
program's settings written into it: no Python and no compiler at run time or at wrap time.
"""

from __future__ import annotations

import os
import tempfile

from nixld import shims
from nixld.errors import NixLdError, NotExecutable, display
from nixld.loader import (
    MODE_DIRECT,
    MODE_LIBRARY_PATH,
    environment_lookup,
    initial_environment,
    plan_command,
    resolve_program,
)

# What launcher.c reserves for the settings, after its mark.
SETTINGS_MARK = b"NIXLD-LAUNCHER-SETTINGS-1\0"
SETTINGS_SIZE = 32768

FORMATS = ("binary",)


class WrapError(NixLdError):
    """The wrapper cannot be written: the output exists, or its directory cannot be written."""


def launcher_settings(program: bytes, libs: tuple[bytes, ...], ld: bytes | None, argv0: bytes | None,
                      env_entries: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """The launcher's settings for `program`, planned as `nixld run -L LIBS --ld LD PROGRAM`
    plans it, without the caller's LD_LIBRARY_PATH (the launcher reads its own caller's):
    (loader, library directories joined with ":", program, argv0 or b"", b"1" or b"0" for
    whether the loader takes --argv0). Raises a LaunchError when nixld run would refuse, and
    NotExecutable for what a launcher cannot start."""
    entries = tuple(entry for entry in env_entries if not entry.startswith(b"LD_LIBRARY_PATH="))
    plan = plan_command(program, (program,), entries, libs, ld)
    shown = display(program)
    if plan.mode == MODE_DIRECT:
        raise NotExecutable(f"{shown} needs no wrapper: it is statically linked or a script that starts by itself")
    if os.path.realpath(plan.program) != os.path.realpath(program):
        raise NotExecutable(f"{shown} is a script whose interpreter is foreign: wrap its interpreter "
                            f"{display(plan.program)} instead")
    if plan.mode != MODE_LIBRARY_PATH:
        raise NotExecutable(f"loader {display(plan.loader)} has no --library-path option, which the launcher needs")
    takes_argv0 = b"--argv0" in plan.argv
    return (plan.loader, b":".join(plan.library_path), os.path.abspath(plan.program), argv0 or b"",
            b"1" if takes_argv0 else b"0")


def launcher_bytes(settings: tuple[bytes, ...], launcher_file: str | None = None) -> bytes:
    """A copy of the compiled launcher (this machine's, or `launcher_file`) with `settings`
    written into its settings area."""
    launcher_file = launcher_file or shims.launcher_path()
    with open(launcher_file, "rb") as stream:
        launcher = stream.read()
    start = launcher.find(SETTINGS_MARK)
    if start < 0 or launcher.find(SETTINGS_MARK, start + 1) >= 0:
        raise WrapError(f"{launcher_file} is not nixld's launcher (its settings area is not found once)")
    payload = SETTINGS_MARK + b"".join(field + b"\0" for field in settings)
    if len(payload) > SETTINGS_SIZE:
        raise WrapError(f"the settings take {len(payload)} bytes; the launcher holds {SETTINGS_SIZE}: "
                        "use fewer or shorter library directories")
    return launcher[:start] + payload + launcher[start + len(payload):]


def write_executable(output: bytes, data: bytes, force: bool) -> None:
    """Write `data` to `output` (mode 755) all at once: through a temporary file in the same
    directory, so that an interrupted wrap leaves nothing half-written; an existing `output`
    is replaced only when `force`."""
    directory = os.path.dirname(os.path.abspath(output)) or b"."
    shown = display(output)
    if os.path.lexists(output) and not force:
        raise WrapError(f"{shown} exists: give --force to replace it")
    try:
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=b".nixld-wrap-")
    except OSError as error:
        raise WrapError(f"cannot write {shown}: {error.strerror}") from error
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            os.fchmod(stream.fileno(), 0o755)
        if force:
            os.replace(temporary, output)
        else:
            os.link(temporary, output)  # fails, rather than replaces, if `output` appeared meanwhile
            os.unlink(temporary)
    except FileExistsError:
        os.unlink(temporary)
        raise WrapError(f"{shown} exists: give --force to replace it") from None
    except OSError as error:
        os.unlink(temporary)
        raise WrapError(f"cannot write {shown}: {error.strerror}") from error


def wrap(program: bytes, output: bytes | None, libs: tuple[bytes, ...], ld: bytes | None, argv0: bytes | None,
         fmt: str, force: bool) -> tuple[bytes, tuple[bytes, ...]]:
    """Write the wrapper of `program` (found as nixld run finds it) in format `fmt` to `output`
    (default: the program's name in the working directory); returns (output, settings)."""
    if fmt not in FORMATS:
        raise WrapError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
    entries = initial_environment()
    resolved = resolve_program(program, environment_lookup(entries))
    output = output or os.path.basename(resolved)
    if os.path.exists(output) and os.path.samefile(output, resolved):
        raise WrapError(f"{display(output)} is the program itself: give -o another path")
    settings = launcher_settings(resolved, libs, ld, argv0, entries)
    write_executable(output, launcher_bytes(settings), force)
    return output, settings
