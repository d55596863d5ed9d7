"""The stand-in nixpkgs' Python packages (default.nix): `copy_distribution.py NAME SITE_PACKAGES`
copies the files of this machine's installed distribution NAME (found on PYTHONPATH, as its
RECORD lists them) into SITE_PACKAGES. Its scripts, outside site-packages, are left out."""

import importlib.metadata
import os
import shutil
import sys


def main() -> int:
    name, site_packages = sys.argv[1:]
    distribution = importlib.metadata.distribution(name)
    if distribution.files is None:
        print(f"copy_distribution.py: {name} lists no files (no RECORD)", file=sys.stderr)
        return 1
    for file in distribution.files:
        if str(file).startswith(".."):
            continue
        source = distribution.locate_file(file)
        target = os.path.join(site_packages, str(file))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(source, target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
