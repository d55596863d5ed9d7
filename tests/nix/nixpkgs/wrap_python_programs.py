"""The stand-in nixpkgs' wrapPythonPrograms (default.nix): `wrap_python_programs.py BIN PATHS`
gives each Python script in BIN the site-packages directories in PATHS (colon-separated) on its
sys.path, in a line after its #! line, as nixpkgs' wrapper does (which also wraps the script in a
shell script that sets PATH: not done here)."""

import os
import sys


def main() -> int:
    bin_dir, paths = sys.argv[1:]
    directories = [path for path in paths.split(":") if path]
    line = f"import site; [site.addsitedir(directory) for directory in {directories!r}]\n"
    for name in sorted(os.listdir(bin_dir)) if os.path.isdir(bin_dir) else []:
        path = os.path.join(bin_dir, name)
        with open(path, "rb") as stream:
            text = stream.read()
        first, _, rest = text.partition(b"\n")
        if not (first.startswith(b"#!") and b"python" in first):
            continue
        with open(path, "wb") as stream:
            stream.write(first + b"\n" + line.encode() + rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
