"""Indexing for `nixld find-libs`: a tree of 20,000 files, without and with the cache.

The bar (from the issue): indexing a tree of 20,000 files finishes in seconds, and a second run
with a warm cache is at least 10x faster than the first. The tree is built in a temporary
directory from hard links (or copies) of this machine's own shared libraries and decoys: 1,000
package directories, each with lib/ holding 14 libraries, 3 files named like libraries that are
not ELF (linker scripts, text) and 3 files that are not libraries, as a Nix store's lib/
directories hold. Each measurement runs in a fresh process (`nixld find-libs` is one), timing
nixld.findlibs.load_index as find-libs calls it:

  cold  no cache file: every directory listed, every library's header read
  warm  the cache of the previous run: every directory's mtime checked, nothing read

Medians of --runs runs each (each cold run starts from an empty cache directory; the page cache
is warm after the first, so `first cold` is printed on its own). Exit status 0 when cold
finishes within 10 s and cold/warm >= 10.

    python benchmarks/find_libs.py [--runs N] [--packages N]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

MEASURE = """
import sys, time
from nixld import findlibs
start = time.perf_counter()
index, how = findlibs.load_index(sys.argv[1].encode(), sys.argv[2].encode())
print(time.perf_counter() - start, how, len(index.directories), sum(1 for _ in index.candidates()))
"""


def machine_libraries(count: int) -> list[str]:
    libraries = sorted(glob.glob("/usr/lib/x86_64-linux-gnu/lib*.so.*") + glob.glob("/lib/x86_64-linux-gnu/lib*.so.*"))
    real = [path for path in libraries if os.path.isfile(path) and not os.path.islink(path)]
    if len(real) < count:
        sys.exit(f"find_libs.py: this machine has {len(real)} shared libraries; {count} are needed")
    return real[:count]


def build_tree(root: str, packages: int) -> int:
    libraries = machine_libraries(14)
    files = 0
    for number in range(packages):
        lib = os.path.join(root, f"{number:05d}-package", "lib")
        os.makedirs(lib)
        for library in libraries:
            target = os.path.join(lib, os.path.basename(library))
            try:
                os.link(library, target)
            except OSError:
                shutil.copy(library, target)
        for name in ("libc.so", "libm.so", "libpthread.so"):  # linker scripts, as glibc ships them
            with open(os.path.join(lib, name), "w") as stream:
                stream.write("/* GNU ld script */\nGROUP ( libc.so.6 )\n")
        for name in ("README", "pkgconfig.pc", "package.cmake"):
            with open(os.path.join(lib, name), "w") as stream:
                stream.write("not a library\n")
        files += 20
    return files


def measure(root: str, cache: str) -> tuple[float, str, int, int]:
    result = subprocess.run([sys.executable, "-c", MEASURE, root, cache], capture_output=True, text=True, check=True)
    seconds, how, directories, libraries = result.stdout.split()
    return float(seconds), how, int(directories), int(libraries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--packages", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        root = os.path.join(workdir, "store")
        files = build_tree(root, args.packages)
        caches = os.path.join(workdir, "caches")
        cold, warm = [], []
        first = None
        for run in range(args.runs):
            cache = os.path.join(caches, str(run))
            seconds, how, directories, libraries = measure(root, cache)
            assert how == "built", how
            first = first if first is not None else seconds
            cold.append(seconds)
            seconds, how, _, warm_libraries = measure(root, cache)
            assert how == "cached" and warm_libraries == libraries, (how, warm_libraries, libraries)
            warm.append(seconds)
    cold_median, warm_median = statistics.median(cold), statistics.median(warm)
    ratio = cold_median / warm_median
    print(f"tree: {files} files in {args.packages} packages ({directories} directories indexed, "
          f"{libraries} libraries found)")
    print(f"first cold run: {first:.3f} s")
    print(f"cold: median {cold_median:.3f} s of {args.runs} (each from an empty cache)")
    print(f"warm: median {warm_median:.3f} s of {args.runs}")
    verdict = cold_median <= 10 and ratio >= 10
    print(f"cold/warm = {ratio:.1f}x  {'PASS' if verdict else 'FAIL'} (bars: cold within 10 s, at least 10x)")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
