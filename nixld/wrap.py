"""`nixld wrap`: a file that starts one foreign program as `nixld run` would, for good.

All formats render one WrapSettings, decided at wrap time as `nixld run` decides: `sh`, a
POSIX sh script whose only command is the loader's exec; `binary`, a copy of the compiled
launcher (nixld/shim/launcher.c) with the settings written into it; `nix`, a
writeShellScriptBin expression, and `envrc`, direnv lines, both setting NIX_LD and
NIX_LD_LIBRARY_PATH as nix-ld users write them (for a program started by nix-ld or nixld's
shim at its interpreter path). No Python and no compiler run when the wrapper is used.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import tempfile
from collections import namedtuple

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

FORMATS = ("sh", "binary", "nix", "envrc")

WrapSettings = namedtuple("WrapSettings", "loader directories program argv0 takes_argv0")
WrapSettings.__doc__ = """What a wrapper starts: `loader` (bytes), the library `directories` fixed at
wrap time (-L, then the NIX_LD directories), `program` (an absolute path), `argv0` (bytes, or
None for the wrapper's own argv[0]) and whether the loader `takes_argv0`."""


class WrapError(NixLdError):
    """The wrapper cannot be written: the output exists, or its directory cannot be written."""


def wrap_settings(program: bytes, libs: tuple[bytes, ...], ld: bytes | None, argv0: bytes | None,
                  env_entries: tuple[bytes, ...]) -> WrapSettings:
    """The settings for `program`, planned as `nixld run -L LIBS --ld LD PROGRAM` plans it,
    without the caller's LD_LIBRARY_PATH (a wrapper reads its own caller's). Raises a
    LaunchError when nixld run would refuse, and NotExecutable for what a wrapper cannot start."""
    entries = tuple(entry for entry in env_entries if not entry.startswith(b"LD_LIBRARY_PATH="))
    plan = plan_command(program, (program,), entries, libs, ld)
    shown = display(program)
    if plan.mode == MODE_DIRECT:
        raise NotExecutable(f"{shown} needs no wrapper: it is statically linked or a script that starts by itself")
    if os.path.realpath(plan.program) != os.path.realpath(program):
        raise NotExecutable(f"{shown} is a script whose interpreter is foreign: wrap its interpreter "
                            f"{display(plan.program)} instead")
    if plan.mode != MODE_LIBRARY_PATH:
        raise NotExecutable(f"loader {display(plan.loader)} has no --library-path option, which a wrapper needs")
    return WrapSettings(plan.loader, plan.library_path, os.path.abspath(plan.program), argv0,
                        b"--argv0" in plan.argv)


def launcher_bytes(settings: WrapSettings, launcher_file: str | None = None) -> bytes:
    """A copy of the compiled launcher (this machine's, or `launcher_file`) with `settings`
    written into its settings area."""
    launcher_file = launcher_file or shims.launcher_path()
    with open(launcher_file, "rb") as stream:
        launcher = stream.read()
    start = launcher.find(SETTINGS_MARK)
    if start < 0 or launcher.find(SETTINGS_MARK, start + 1) >= 0:
        raise WrapError(f"{launcher_file} is not nixld's launcher (its settings area is not found once)")
    fields = (settings.loader, b":".join(settings.directories), settings.program, settings.argv0 or b"",
              b"1" if settings.takes_argv0 else b"0")
    payload = SETTINGS_MARK + b"".join(field + b"\0" for field in fields)
    if len(payload) > SETTINGS_SIZE:
        raise WrapError(f"the settings take {len(payload)} bytes; the launcher holds {SETTINGS_SIZE}: "
                        "use fewer or shorter library directories")
    return launcher[:start] + payload + launcher[start + len(payload):]


def shell_quote(value: bytes) -> bytes:
    """`value` as one word of POSIX sh, whatever its bytes (newlines included)."""
    return b"'" + value.replace(b"'", b"'\\''") + b"'"


def sh_script(settings: WrapSettings) -> bytes:
    """A POSIX sh script that does nothing but exec the loader as nixld run would. The caller's
    LD_LIBRARY_PATH, when set, comes first, as it is (sh has no way to drop its empty entries
    without a loop; glibc reads them as it reads LD_LIBRARY_PATH's)."""
    fixed = b":".join(settings.directories)
    library_path = b'"${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}"' + shell_quote(fixed) if fixed \
        else b'"${LD_LIBRARY_PATH}"'
    words = [b"exec", shell_quote(settings.loader), b"--library-path", library_path]
    if settings.takes_argv0:
        words += [b"--argv0", shell_quote(settings.argv0) if settings.argv0 is not None else b'"$0"']
    words += [shell_quote(settings.program), b'"$@"']
    return b"#!/bin/sh\n" + b" ".join(words) + b"\n"


def nix_string(value: bytes) -> bytes:
    """`value` as a double-quoted Nix string."""
    escaped = value.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"${", b"\\${")
    return b'"' + escaped.replace(b"\n", b"\\n").replace(b"\r", b"\\r").replace(b"\t", b"\\t") + b'"'


def nix_expression(settings: WrapSettings) -> bytes:
    """A Nix expression for a command named after the program that sets NIX_LD and
    NIX_LD_LIBRARY_PATH and starts the program, which nix-ld (or nixld's shim) at its
    interpreter path then hands to that loader."""
    name = re.sub(rb"[^A-Za-z0-9+._?=-]", b"-", os.path.basename(settings.program)).lstrip(b".") or b"program"
    script = (b"export NIX_LD=" + shell_quote(settings.loader) + b"\n"
              + b"export NIX_LD_LIBRARY_PATH=" + shell_quote(b":".join(settings.directories)) + b"\n"
              + b"exec " + shell_quote(settings.program) + b' "$@"\n')
    return (b"# Written by nixld wrap: the program, started through nix-ld's variables.\n"
            b"{ pkgs ? import <nixpkgs> { } }:\n"
            b"pkgs.writeShellScriptBin " + nix_string(name) + b" " + nix_string(script) + b"\n")


def envrc_lines(settings: WrapSettings) -> bytes:
    """direnv lines that export NIX_LD and NIX_LD_LIBRARY_PATH for the program."""
    return (b"# Written by nixld wrap for " + settings.program.replace(b"\n", b"?") + b"\n"
            + b"export NIX_LD=" + shell_quote(settings.loader) + b"\n"
            + b"export NIX_LD_LIBRARY_PATH=" + shell_quote(b":".join(settings.directories)) + b"\n")


RENDERERS = {"sh": sh_script, "binary": launcher_bytes, "nix": nix_expression, "envrc": envrc_lines}


def default_output(fmt: str, program: bytes) -> bytes:
    """Where a wrapper goes without -o: the program's name here (sh, binary), NAME.nix, .envrc."""
    name = os.path.basename(program)
    return {"nix": name + b".nix", "envrc": b".envrc"}.get(fmt, name)


def write_atomically(output: bytes, data: bytes, force: bool, mode: int = 0o755) -> None:
    """Write `data` to `output` (with `mode`) all at once: through a temporary file in the same
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
            os.fchmod(stream.fileno(), mode)
        if force:
            os.replace(temporary, output)
        else:
            os.link(temporary, output)  # fails, rather than replaces, if `output` appeared meanwhile
            os.unlink(temporary)
    except FileExistsError:
        _remove(temporary)
        raise WrapError(f"{shown} exists: give --force to replace it") from None
    except OSError as error:
        _remove(temporary)
        raise WrapError(f"cannot write {shown}: {error.strerror}") from error
    except BaseException:  # an interrupt, too, leaves no temporary file behind
        _remove(temporary)
        raise


def _remove(path: bytes) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def privilege_warning(fmt: str, program: bytes, output: bytes) -> str | None:
    """What to tell whoever wraps a set-user-ID or set-group-ID `program` in format `fmt` at
    `output` (a new file, without those bits); None for any other program."""
    try:
        status = os.stat(program)
    except OSError:  # gone since it was wrapped: nothing left to warn of
        return None
    bits = [(name, mode, holder) for flag, name, mode, holder in (
        (stat.S_ISUID, "set-user-ID", "u+s", "owner's"),
        (stat.S_ISGID, "set-group-ID", "g+s", "group's")) if status.st_mode & flag]
    if not bits:
        return None
    which = " and ".join(name for name, _, _ in bits)
    theirs = "its " + " and ".join(holder for _, _, holder in bits)
    shown, out = display(program), display(output)
    if fmt == "binary":
        target = shlex.quote(os.fsdecode(output))
        modes = ",".join(mode for _, mode, _ in bits)
        return (f"{out} does not carry the {which} bit{'s' * (len(bits) > 1)} of {shown}, so the program runs "
                f"with its caller's privileges, not {theirs}: to give it those, run "
                f"`{_give_ownership(status, target)} && chmod {modes} {target}` (so started, the launcher uses "
                "only the library directories fixed now, not its caller's LD_LIBRARY_PATH)")
    if fmt == "sh":
        return (f"{out} is a script and Linux ignores {which} on scripts, so through it {shown} runs with "
                f"its caller's privileges, not {theirs}: use --format binary")
    # nix and envrc leave the program to start by itself, with its own bits: in secure mode,
    # where nixld's shim ignores every NIX_LD variable and glibc the LD_LIBRARY_PATH nix-ld sets.
    return (f"{shown} is {which}, so it starts in secure mode, where the library directories {out} sets "
            "in NIX_LD_LIBRARY_PATH are not used: use --format binary")


def _give_ownership(status: os.stat_result, target: str) -> str:
    """The chown (or chgrp) command that gives `target` the owner and group that hold the
    set-user-ID and set-group-ID bits of the file whose `status` is given."""
    import grp  # start-up time: only a set-user-ID program's wrapper needs the names
    import pwd

    try:
        owner = pwd.getpwuid(status.st_uid).pw_name
    except KeyError:
        owner = str(status.st_uid)
    try:
        group = grp.getgrgid(status.st_gid).gr_name
    except KeyError:
        group = str(status.st_gid)
    if not status.st_mode & stat.S_ISUID:
        return f"chgrp {shlex.quote(group)} {target}"
    if not status.st_mode & stat.S_ISGID:
        return f"chown {shlex.quote(owner)} {target}"
    return f"chown {shlex.quote(owner + ':' + group)} {target}"


def wrap(program: bytes, output: bytes | None, libs: tuple[bytes, ...], ld: bytes | None, argv0: bytes | None,
         fmt: str, force: bool) -> tuple[bytes, WrapSettings, str | None]:
    """Write the wrapper of `program` (found as nixld run finds it) in format `fmt` to `output`
    (default: default_output); returns (output, settings, privilege_warning's warning)."""
    if fmt not in FORMATS:
        raise WrapError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
    entries = initial_environment()
    resolved = resolve_program(program, environment_lookup(entries))
    output = output or default_output(fmt, resolved)
    if os.path.exists(output) and os.path.samefile(output, resolved):
        raise WrapError(f"{display(output)} is the program itself: give -o another path")
    settings = wrap_settings(resolved, libs, ld, argv0, entries)
    data = RENDERERS[fmt](settings)
    write_atomically(output, data, force, 0o755 if fmt in ("sh", "binary") else 0o644)
    return output, settings, privilege_warning(fmt, settings.program, output)
