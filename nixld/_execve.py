"""The one door to nixld's C core: execve(2) with a ready-made argv and environment.

Takes plain bytes; raises OSError like os.execve. When the compiled core is missing (an
install without a C compiler, a source checkout), the os module does the same job.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

# Python ignores these at start-up (see _exec.c); the C core resets them itself.
_SIGNALS_PYTHON_IGNORES = ("SIGPIPE", "SIGXFSZ")


def c_core_unavailable() -> str | None:
    """Why the C core cannot be used, or None when it can (imported on first use, for
    start-up time: only a process that execs needs it)."""
    try:
        from nixld._exec import lib  # noqa: F401  (imported to see that it loads)
    except ImportError as error:
        return f"the C exec core cannot be imported ({error}); using os.execve"
    return None


def execve(path: bytes, argv: Sequence[bytes], env: Sequence[bytes]) -> None:
    """Replace this process with `path`, given `argv` and the environment entries `env`
    (NAME=value), with SIGPIPE and SIGXFSZ back at their default action.

    Returns only by raising OSError (the process is left as it was), or ValueError for a NUL
    byte inside the path, an argument or an entry.
    """
    if b"\0" in path:
        raise ValueError("embedded null byte in the program path")
    argv_block = _block(argv, "argument")
    env_block = _block(env, "environment variable")
    try:
        from nixld._exec import ffi, lib
    except ImportError:
        _execve_with_os(path, argv, env)
    lib.nixld_execve(path, argv_block, len(argv), env_block, len(env), 1)
    raise OSError(ffi.errno, os.strerror(ffi.errno), os.fsdecode(path))


def _execve_with_os(path: bytes, argv: Sequence[bytes], env: Sequence[bytes]) -> None:
    import signal  # start-up time: the stdlib module builds enums; only this fallback needs it

    previous = {}
    for name in _SIGNALS_PYTHON_IGNORES:
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, signal.SIG_DFL)
    try:
        # os.execve takes a mapping: of a name given twice only the last entry survives, and
        # entries without "=" are lost; the C core passes the block as it is.
        os.execve(path, list(argv), dict(entry.split(b"=", 1) for entry in env if b"=" in entry))
    finally:  # reached only when the exec failed
        for number, handler in previous.items():
            signal.signal(number, handler)


def _block(strings: Sequence[bytes], what: str) -> bytes:
    block = b"\0".join(strings) + b"\0" if strings else b""
    # The C side walks exactly len(strings) strings: an embedded NUL would shift them all.
    if block.count(b"\0") != len(strings):
        raise ValueError(f"embedded null byte in an {what}")
    return block
