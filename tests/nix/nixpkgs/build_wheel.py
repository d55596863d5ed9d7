"""The stand-in nixpkgs' pypaBuildHook (default.nix): `build_wheel.py OUTDIR` builds the wheel of
the project in the current directory with the PEP 517 backend its pyproject.toml names, from the
packages on PYTHONPATH, as `python -m build --no-isolation --wheel` does (without its checks)."""

import importlib
import re
import sys


def main() -> int:
    (outdir,) = sys.argv[1:]
    with open("pyproject.toml", encoding="utf-8") as stream:
        found = re.search(r'^build-backend = "([\w.:]+)"$', stream.read(), re.MULTILINE)
    module, _, attribute = (found.group(1) if found else "setuptools.build_meta:__legacy__").partition(":")
    backend = importlib.import_module(module)
    if attribute:
        backend = getattr(backend, attribute)
    print(f"build_wheel.py: built {backend.build_wheel(outdir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
