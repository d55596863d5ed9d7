"""Small explicit environments for the programs the tests start."""

from __future__ import annotations


def explicit_environment(loader: str, **variables: str | bytes | None) -> dict:
    """PATH, NIX_LD=`loader`, a UTF-8 locale, then `variables` (None unsets one).

    LANG is set because, under the C locale, Python itself adds LC_CTYPE to its environment
    (PEP 538); tests about the environment want to compare against exactly what was given.
    """
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "NIX_LD": loader}
    for name, value in variables.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env
