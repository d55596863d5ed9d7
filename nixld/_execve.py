"""The one door to nixld's C core: execve(2) with a ready-made argv and environment.

Takes and returns plain bytes; raises OSError like os.execve. When the compiled core is
missing (an install without a C compiler, a source checkout), os.execve does the same job.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

try:
    from nixld._exec import ffi as _ffi, lib as _lib
except ImportError as error:  # a checkout that was never built
    _lib = None
    UNAVAILABLE_REASON: str | None = f"the C exec core cannot be imported ({error}); using os.execve"
else:
    UNAVAILABLE_REASON = None


def execve(path: bytes, argv: Sequence[bytes], env: Sequence[tuple[bytes, bytes]]) -> None:
    """Replace this process with `path`; returns only by raising OSError (or ValueError for
    a NUL byte inside an argument or a variable)."""
    if _lib is None:
        os.execve(path, list(argv), dict(env))
    if b"\0" in path:
        raise ValueError("embedded null byte in the program path")
    argv_block = _block(argv, "argument")
    entries = list(map(b"=".join, env))
    env_block = _block(entries, "environment variable")
    _lib.nixld_execve(path, argv_block, len(argv), env_block, len(entries))
    raise OSError(_ffi.errno, os.strerror(_ffi.errno), os.fsdecode(path))


def _block(strings: Sequence[bytes], what: str) -> bytes:
    block = b"\0".join(strings) + b"\0" if strings else b""
    # The C side walks exactly len(strings) strings: an embedded NUL would shift them all.
    if block.count(b"\0") != len(strings):
        raise ValueError(f"embedded null byte in an {what}")
    return block
