"""Small explicit environments for the programs the tests start."""

from __future__ import annotations


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


# nix-ld's four-row table (../shared/reference/nix-ld-facts.md) and a fifth row: what the caller
# sets of the two library variables. The program and its children must see exactly that.
NIX_LD_TABLE = {
    "row1-both-unset": {},
    "row2-only-ld-library-path": {"LD_LIBRARY_PATH": "/some/lib"},
    "row3-only-nix-ld-library-path": {"NIX_LD_LIBRARY_PATH": "/nix/lib"},
    "row4-both-set": {"NIX_LD_LIBRARY_PATH": "/nix/lib", "LD_LIBRARY_PATH": "/some/lib"},
    "both-set-but-empty": {"NIX_LD_LIBRARY_PATH": "", "LD_LIBRARY_PATH": ""},
}
