"""`nixld wrap`: a file that starts one foreign program as `nixld run` would, for good.

All formats render one WrapSettings, decided at wrap time as `nixld run` decides: `sh`, a
POSIX sh script whose only command is the loader's exec; `binary`, a copy of the compiled
launcher (nixld/shim/launcher.c) with the settings written into it; `nix`, a
writeShellScriptBin expression, and `envrc`, direnv lines, both setting NIX_LD and
NIX_LD_LIBRARY_PATH as nix-ld users write them (for a program started by nix-ld or nixld's
shim at its interpreter path). No Python and no compiler run when the wrapper is used.

Every path a wrapper holds is absolute, read from the current directory at wrap time, as
`nixld run` would read it then. `wrap_in_place` follows nixpkgs' wrapProgram: the program
moves to `.NAME-wrapped` beside it and the sh or binary wrapper takes its name, so that a
program that finds its files beside itself (through argv[0], or /proc/self/exe with the
binary format) still finds them; `undo_in_place` puts it back.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import stat
import tempfile
from collections import namedtuple

from nixld import config, shims
from nixld.errors import NixLdError, NotExecutable, ProgramNotFound, display
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
# nix and envrc set variables for a program started by itself: they cannot take its place.
IN_PLACE_FORMATS = ("sh", "binary")

# A wrapper is small (the launcher is some 45 KiB): a larger file is not read to find out.
_WRAPPER_SIZE_LIMIT = 1 << 20

WrapSettings = namedtuple("WrapSettings", "loader directories program argv0 takes_argv0")
WrapSettings.__doc__ = """What a wrapper starts: `loader` (an absolute path), the library
`directories` fixed at wrap time (-L, then the NIX_LD directories; absolute), `program` (an
absolute path), `argv0` (bytes, or None for the wrapper's own argv[0]) and whether the loader
`takes_argv0`."""


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
        raise NotExecutable(f"{shown} is a #! script, which `nixld run` starts through its interpreter "
                            f"{display(plan.program)}: wrap that interpreter instead")
    if plan.mode != MODE_LIBRARY_PATH:
        raise NotExecutable(f"loader {display(plan.loader)} has no --library-path option, which a wrapper needs")
    # The loader splits the path on ":" and ";" and reads an empty entry as the current
    # directory, a relative one from it: from wherever the wrapper is started. nixld reads
    # an empty entry as none (config.split_ld_library_path) and a relative one from here.
    directories = config.split_ld_library_path(b":".join(plan.library_path))
    return WrapSettings(absolute(plan.loader), config.library_search_path(map(absolute, directories)),
                        absolute(plan.program), argv0, b"--argv0" in plan.argv)


def absolute(path: bytes) -> bytes:
    """`path` read from the current directory, as the kernel and the loader read it now: only
    "." components and repeated slashes are dropped, never ".." (which may follow a symbolic
    link)."""
    if not path.startswith(b"/"):
        path = os.getcwdb() + b"/" + path
    return b"/" + b"/".join(part for part in path.split(b"/") if part not in (b"", b"."))


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


def launcher_settings(data: bytes) -> WrapSettings | None:
    """The settings launcher_bytes wrote into `data`, a launcher's bytes; None when it is not
    a launcher with settings."""
    start = data.find(SETTINGS_MARK)
    if start < 0 or data.find(SETTINGS_MARK, start + 1) >= 0:
        return None
    fields = data[start + len(SETTINGS_MARK):start + SETTINGS_SIZE].split(b"\0")
    if len(fields) < 6:
        return None
    loader, directories, program, argv0, takes_argv0 = fields[:5]
    if not loader or not program or takes_argv0 not in (b"0", b"1"):
        return None
    return WrapSettings(loader, _fixed_directories(directories), program, argv0 or None, takes_argv0 == b"1")


def _fixed_directories(joined: bytes) -> tuple[bytes, ...]:
    return tuple(joined.split(b":")) if joined else ()


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


# sh_script's words: a shell_quote'd value, and the script as it writes it.
_QUOTED = rb"'[^']*'(?:\\''[^']*')*"
_SH_SCRIPT = re.compile(
    rb'#!/bin/sh\nexec (?P<loader>%(q)s) --library-path '
    rb'(?:"\$\{LD_LIBRARY_PATH:\+\$LD_LIBRARY_PATH:\}"(?P<directories>%(q)s)|"\$\{LD_LIBRARY_PATH\}")'
    rb'(?P<takes_argv0> --argv0 (?:(?P<argv0>%(q)s)|"\$0"))? (?P<program>%(q)s) "\$@"\n' % {b"q": _QUOTED})


def sh_settings(script: bytes) -> WrapSettings | None:
    """The settings sh_script wrote `script` from; None when it is not such a script."""
    match = _SH_SCRIPT.fullmatch(script)
    if match is None:
        return None
    loader, directories, argv0, program = (
        None if word is None else word[1:-1].replace(b"'\\''", b"'")
        for word in match.group("loader", "directories", "argv0", "program"))
    settings = WrapSettings(loader, _fixed_directories(directories or b""), program, argv0,
                            match.group("takes_argv0") is not None)
    # Only a script sh_script would write, byte for byte, is one.
    return settings if sh_script(settings) == script else None


def read_wrapper(path: bytes) -> WrapSettings | None:
    """The settings of the sh or binary wrapper at `path`; None when `path` is not one (or
    cannot be read)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO's open would wait for a writer
            return None
        with open(path, "rb") as stream:
            if os.fstat(stream.fileno()).st_size > _WRAPPER_SIZE_LIMIT:
                return None
            data = stream.read(_WRAPPER_SIZE_LIMIT + 1)
    except OSError:
        return None
    return launcher_settings(data) if data.startswith(b"\x7fELF") else sh_settings(data)


def nix_string(value: bytes) -> bytes:
    """`value` as a double-quoted Nix string."""
    escaped = value.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"${", b"\\${")
    return b'"' + escaped.replace(b"\n", b"\\n").replace(b"\r", b"\\r").replace(b"\t", b"\\t") + b'"'


def nix_command_name(program: bytes) -> bytes:
    """The name of the nix format's command for `program`: its file name, in the characters
    a store path's name may hold."""
    return re.sub(rb"[^A-Za-z0-9+._?=-]", b"-", os.path.basename(program)).lstrip(b".") or b"program"


def nix_expression(settings: WrapSettings) -> bytes:
    """A Nix expression for a command named after the program that sets NIX_LD and
    NIX_LD_LIBRARY_PATH and starts the program, which nix-ld (or nixld's shim) at its
    interpreter path then hands to that loader."""
    name = nix_command_name(settings.program)
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


def output_path(fmt: str, program: bytes, output: bytes | None) -> bytes:
    """Where the wrapper of `program` goes: `output`, or into it when it is a directory (as cp
    and install read one); without it, here: the program's name (sh, binary), NAME.nix or .envrc."""
    name = os.path.basename(program)
    name = {"nix": name + b".nix", "envrc": b".envrc"}.get(fmt, name)
    if output is None:
        return name
    return os.path.join(output, name) if os.path.isdir(output) else output


def write_atomically(output: bytes, data: bytes, force: bool, mode: int = 0o755) -> None:
    """Write `data` to `output` (with `mode`) all at once: through a temporary file in the same
    directory, so that an interrupted wrap leaves nothing half-written; an existing `output`
    is replaced only when `force`, and never when it is a directory."""
    shown = display(output)
    if os.path.isdir(output):
        raise WrapError(f"{shown} is a directory: give -o another path")
    if os.path.lexists(output) and not force:
        raise WrapError(f"{shown} exists: give --force to replace it")
    temporary = _write_temporary(output, data, mode)
    with _removed_on_failure(temporary, shown):
        if force:
            os.replace(temporary, output)
        else:
            try:
                os.link(temporary, output)  # fails, rather than replaces, if `output` appeared meanwhile
            except FileExistsError:
                raise WrapError(f"{shown} exists: give --force to replace it") from None
            os.unlink(temporary)


def _write_temporary(destination: bytes, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> bytes:
    """A new file in the directory of `destination`, the path it is to take, holding `data`
    with `mode` (and `owner`'s user and group IDs, when given). Raises WrapError naming
    `destination`, and then leaves nothing behind."""
    shown = display(destination)
    try:
        fd, temporary = tempfile.mkstemp(dir=os.path.dirname(absolute(destination)), prefix=b".nixld-wrap-")
    except OSError as error:
        raise WrapError(f"cannot write {shown}: {error.strerror}") from error
    with _removed_on_failure(temporary, shown), os.fdopen(fd, "wb") as stream:
        stream.write(data)
        stream.flush()
        status = os.fstat(fd)
        if owner is not None and owner != (status.st_uid, status.st_gid):
            _give_owner(fd, owner, shown)
        os.fchmod(fd, mode)
        os.fsync(fd)  # whole on disk before a rename puts it in the place of a program
    return temporary


@contextlib.contextmanager
def _removed_on_failure(temporary: bytes, shown: str):
    """Remove the file `temporary` when the block fails, an interrupt too; an OSError becomes
    the WrapError "cannot write `shown`"."""
    try:
        yield
    except OSError as error:
        _remove(temporary)
        raise WrapError(f"cannot write {shown}: {error.strerror}") from error
    except BaseException:
        _remove(temporary)
        raise


def _give_owner(fd: int, owner: tuple[int, int], shown: str) -> None:
    try:
        os.fchown(fd, *owner)
    except PermissionError as error:
        raise WrapError(f"cannot give the wrapper at {shown} the program's owner and group (user ID {owner[0]}, "
                        f"group ID {owner[1]}): {error.strerror}: wrap it as its owner, or as root") from error


def _remove(path: bytes) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def wrapped_path(program: bytes) -> bytes:
    """Where wrap_in_place moves `program`: `.NAME-wrapped` in its directory (the name
    nixpkgs' wrapProgram gives), as an absolute path."""
    directory, name = os.path.split(absolute(program))
    return os.path.join(directory, b"." + name + b"-wrapped")


def wrap_in_place(program: bytes, *, libs: tuple[bytes, ...] = (), ld: bytes | None = None,
                  argv0: bytes | None = None, fmt: str = "sh") -> tuple[bytes, WrapSettings, str | None]:
    """Wrap `program` (found as nixld run finds it) where it is, as nixpkgs' wrapProgram does:
    the program moves to wrapped_path(program) and a wrapper in format `fmt` (sh or binary)
    takes its name, its owner, group and permission bits (not its set-user-ID and set-group-ID
    bits, which privilege_warning tells how to give). At no moment is `program` missing or
    half-written, and a failure leaves both paths as they were. Returns (the wrapper's path,
    settings, privilege_warning's warning); raises WrapError for a program wrapped already."""
    if fmt not in IN_PLACE_FORMATS:
        raise WrapError(f"format {fmt!r} cannot take a program's place: wrap in place as sh or binary")
    entries = initial_environment()
    resolved = absolute(resolve_program(program, environment_lookup(entries)))
    wrapped = wrapped_path(resolved)
    _refuse_to_wrap_twice(resolved, wrapped)
    settings = wrap_settings(resolved, libs, ld, argv0, entries)._replace(program=wrapped)
    status = os.stat(resolved)
    mode = stat.S_IMODE(status.st_mode) & ~(stat.S_ISUID | stat.S_ISGID)
    if fmt == "sh":  # a shell reads a script to run it: who may execute the program may read it
        mode |= (mode & 0o111) << 2
    _take_the_place_of(resolved, wrapped, RENDERERS[fmt](settings), mode, (status.st_uid, status.st_gid))
    return resolved, settings, privilege_warning(fmt, wrapped, resolved)


def _refuse_to_wrap_twice(program: bytes, wrapped: bytes) -> None:
    shown = display(program)
    if os.path.islink(program):
        raise WrapError(f"{shown} is a symbolic link: wrap the file it leads to, "
                        f"{display(os.path.realpath(program))}, in place")
    settings = read_wrapper(program)
    if settings is not None and _made_in_place(settings, program):
        raise WrapError(f"{shown} is wrapped in place already: to wrap it anew, run "
                        f"`nixld wrap --undo {shlex.quote(os.fsdecode(program))}` first")
    if settings is not None:
        raise WrapError(f"{shown} is a nixld wrapper of {display(settings.program)}: wrap that program instead")
    if os.path.lexists(wrapped):
        raise _wrapped_exists(program, wrapped)


def _wrapped_exists(program: bytes, wrapped: bytes) -> WrapError:
    return WrapError(f"{display(wrapped)} exists, so {display(program)} cannot move there: move it away (an "
                     "interrupted in-place wrap leaves it as a second name of the program), then wrap again")


def _made_in_place(settings: WrapSettings, wrapper: bytes) -> bool:
    """Whether the wrapper at `wrapper` starts `.NAME-wrapped`, as wrap_in_place made it; by
    name, so that a tree moved or copied since still counts."""
    return os.path.basename(settings.program) == os.path.basename(wrapped_path(wrapper))


def _take_the_place_of(program: bytes, wrapped: bytes, data: bytes, mode: int, owner: tuple[int, int]) -> None:
    """Put `data` at `program` and the program at `wrapped`, each step whole or not at all:
    the wrapper is written to a temporary file, `wrapped` becomes a second name of the program
    (a hard link, which fails rather than replaces), then the temporary file is renamed over
    `program`. A failure undoes the steps before it."""
    shown = display(program)
    temporary = _write_temporary(program, data, mode, owner)
    with _removed_on_failure(temporary, shown):
        try:
            os.link(program, wrapped, follow_symlinks=False)
        except FileExistsError:
            raise _wrapped_exists(program, wrapped) from None
        except OSError as error:
            raise WrapError(f"cannot wrap {shown} in place: it cannot be linked to {display(wrapped)}: "
                            f"{error.strerror} (without a hard link, on a filesystem that has none or for a file "
                            "you may not link, write the wrapper elsewhere with -o)") from error
        try:
            os.replace(temporary, program)
        except BaseException:  # an interrupt, too
            if os.path.lexists(temporary):  # the wrapper has not taken the program's place
                _remove(wrapped)
            raise


def undo_in_place(program: bytes) -> tuple[bytes, bytes]:
    """Put back the program that wrap_in_place moved aside: `program` (found as nixld run
    finds it) must be a sh or binary wrapper made in place, with `.NAME-wrapped` beside it,
    which is renamed over it. Returns (the program's path, where it came back from); raises
    WrapError, changing nothing, for anything else."""
    resolved = absolute(resolve_program(program, environment_lookup(initial_environment())))
    wrapped = wrapped_path(resolved)
    shown = display(resolved)
    if not os.path.lexists(resolved):
        raise ProgramNotFound(f"{shown} does not exist: nothing to undo")
    settings = None if os.path.islink(resolved) else read_wrapper(resolved)
    if settings is None:
        raise WrapError(f"{shown} is not a nixld wrapper (sh or binary): nothing to undo")
    if not _made_in_place(settings, resolved):
        raise WrapError(f"{shown} is a nixld wrapper of {display(settings.program)}, not one made in place: "
                        "there is no program to put back (remove it, if it is not wanted)")
    if os.path.islink(wrapped) or not os.path.isfile(wrapped):
        raise WrapError(f"{shown} was wrapped in place, but {display(wrapped)} is not there (or not a file): "
                        "there is no program to put back")
    try:
        os.replace(wrapped, resolved)
    except OSError as error:
        raise WrapError(f"cannot put {display(wrapped)} back at {shown}: {error.strerror}") from error
    return resolved, wrapped


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


def wrap(program: bytes, *, output: bytes | None = None, libs: tuple[bytes, ...] = (), ld: bytes | None = None,
         argv0: bytes | None = None, fmt: str = "sh", force: bool = False) -> tuple[bytes, WrapSettings, str | None]:
    """Write the wrapper of `program` (found as nixld run finds it) in format `fmt` to
    output_path(fmt, program, output); returns (that path, settings, privilege_warning's
    warning)."""
    if fmt not in FORMATS:
        raise WrapError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
    entries = initial_environment()
    resolved = resolve_program(program, environment_lookup(entries))
    output = output_path(fmt, resolved, output)
    if os.path.exists(output) and os.path.samefile(output, resolved):
        raise WrapError(f"{display(output)} is the program itself: give -o another path, or wrap it in place")
    settings = wrap_settings(resolved, libs, ld, argv0, entries)
    write_atomically(output, RENDERERS[fmt](settings), force, 0o755 if fmt in IN_PLACE_FORMATS else 0o644)
    return output, settings, privilege_warning(fmt, settings.program, output)
