"""Environments for the tests: small explicit ones for the programs they start, and
hypothesis strategies for arbitrary byte environments."""

from __future__ import annotations

import os
import subprocess
import sys

from hypothesis import strategies as st

# nixld's C core passes an environment block as it is given, where subprocess takes a mapping.
_EXEC_WITH_BLOCK = """
import ast, sys
from nixld._execve import execve
command, entries = ast.literal_eval(sys.argv[1])
execve(command[0], command, entries)
"""


def explicit_environment(loader: str, loader_variable: str = "NIX_LD", **variables: str | bytes | None) -> dict:
    """PATH, `loader_variable`=`loader`, a UTF-8 locale, then `variables` (None unsets one).

    LANG is set because, under the C locale, Python itself adds LC_CTYPE to its environment
    (PEP 538); tests about the environment want to compare against exactly what was given.
    """
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", loader_variable: loader}
    for name, value in variables.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_with_block(command: list, entries: list[bytes], timeout: float) -> subprocess.CompletedProcess:
    """Run `command` (its first word a path) with exactly the environment block `entries`:
    a name given twice stays given twice, an entry without "=" stays, all in their order."""
    command = [os.fsencode(word) for word in command]
    return subprocess.run([sys.executable, "-c", _EXEC_WITH_BLOCK, repr((command, list(entries)))],
                          capture_output=True, timeout=timeout)


# nix-ld's four-row table (../shared/reference/nix-ld-facts.md) and a fifth row: what the caller
# sets of the two library variables. The program and its children must see exactly that.
NIX_LD_TABLE = {
    "row1-both-unset": {},
    "row2-only-ld-library-path": {"LD_LIBRARY_PATH": "/some/lib"},
    "row3-only-nix-ld-library-path": {"NIX_LD_LIBRARY_PATH": "/nix/lib"},
    "row4-both-set": {"NIX_LD_LIBRARY_PATH": "/nix/lib", "LD_LIBRARY_PATH": "/some/lib"},
    "both-set-but-empty": {"NIX_LD_LIBRARY_PATH": "", "LD_LIBRARY_PATH": ""},
}


# Hypothesis strategies: environments of arbitrary bytes, weighted towards nix-ld's variables.

# The system-specific ones in both spellings: nix-ld 2.x's (x86_64_linux) and 1.x's (x86_64-linux).
CONTRACT_NAMES = [
    b"LD_LIBRARY_PATH",
    b"NIX_LD_LIBRARY_PATH",
    *(b"NIX_LD_LIBRARY_PATH_" + system for system in (b"x86_64_linux", b"x86_64-linux", b"i686_linux", b"i686-linux",
                                                       b"aarch64_linux", b"aarch64-linux")),
    *(b"NIX_LD_" + system for system in (b"x86_64_linux", b"x86_64-linux", b"i686_linux", b"i686-linux",
                                         b"aarch64_linux", b"aarch64-linux")),
    b"NIX_LD",
    b"NIX_LD_LOG",
    b"PATH",
]

# Directory names: any bytes but NUL and the separators; a few fixed ones make collisions likely.
directories = st.one_of(
    st.sampled_from([b"/a", b"/b", b"/nix/store/x-lib/lib", b"relative", b"/\xff\xfe"]),
    st.binary(min_size=1, max_size=12).filter(lambda d: not set(d) & set(b"\0:,;")),
)
separators = st.sampled_from([b":", b",", b";"])


@st.composite
def path_values(draw):
    """A search-path value: directories and empty entries joined by arbitrary separators."""
    entries = draw(st.lists(st.one_of(st.just(b""), directories), max_size=6))
    value = b""
    for index, entry in enumerate(entries):
        if index:
            value += draw(separators)
        value += entry
    return value


names = st.one_of(
    st.sampled_from(CONTRACT_NAMES),
    st.binary(min_size=1, max_size=10).filter(lambda n: b"=" not in n and b"\0" not in n),
)
values = st.one_of(path_values(), st.binary(max_size=20).filter(lambda v: b"\0" not in v))
environments = st.dictionaries(names, values, max_size=12)
# `-L` values: mostly one directory each, some a whole search path (`-L a::b`), some empty.
library_args = st.lists(st.one_of(directories, path_values()), max_size=4)
