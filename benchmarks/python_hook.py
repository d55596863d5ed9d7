"""What nixld's Python hook costs: at every start of Python, and at the first import it rescues.

The bar (from the issue): `python -c pass` with the hook installed costs at most 1.05x the same
without it. Two virtualenvs of one Python, identical but for `nixld python-hook install`, and a
third with a .pth file that holds only a comment, which is what any .pth file costs:

  p  plain/bin/python -c pass                  no hook
  c  comment/bin/python -c pass                a .pth file with a comment only: the floor of any hook
  h  hooked/bin/python -c pass                 the hook installed

and what an import costs that needs a library the loader does not find (hookext, which needs
libhookdep.so.1, which needs libhookleaf.so.1: tests/programs/hook_*.c), found by the loader
through LD_LIBRARY_PATH (the workaround that leaks) or by the hook in NIX_LD_LIBRARY_PATH:

  l  LD_LIBRARY_PATH=DIR plain/bin/python -c 'import hookext'
  r  NIX_LD_LIBRARY_PATH=DIR hooked/bin/python -c 'import hookext'

r - l, less h - p, is the extra time of the first failing import: the failed dlopen, the
rescue module's import, the search, two loads and the retry. h/c is what the hook costs where a
.pth file is read already (most virtualenvs hold one); c/p what reading any .pth file costs,
which depends on the Python (3.13 imports a decoder for it: 1.04x by itself).

Interleaved rounds, medians in ms, ratios with a 95% bootstrap interval (benchmarks/measurements.py),
then one VERDICT line. Exit status 0 when the bar holds, 1 otherwise.

    python benchmarks/python_hook.py [--python PYTHON] [--runs N] [--warmup N]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from measurements import bootstrap_ratio, interleaved_rounds, report

BAR = 1.05
SEED = 20261206
PROGRAMS = Path(__file__).resolve().parent.parent / "tests" / "programs"


def build(workdir: Path) -> tuple[Path, Path]:
    """The libraries (in lib/) and the extension module (in modules/); their directories."""
    lib, modules = workdir / "lib", workdir / "modules"
    lib.mkdir()
    modules.mkdir()
    include = sysconfig.get_paths()["include"]
    gcc = ["gcc", "-O2", "-shared", "-fPIC"]
    subprocess.run([*gcc, "-Wl,-soname,libhookleaf.so.1", "-o", lib / "libhookleaf.so.1",
                    PROGRAMS / "hook_library.c", "-DFUNCTION=hookleaf", "-DADD=40"], check=True)
    subprocess.run([*gcc, "-Wl,-soname,libhookdep.so.1", "-o", lib / "libhookdep.so.1", PROGRAMS / "hook_library.c",
                    "-DFUNCTION=hookdep_value", "-DADD=2", "-DCALLS=hookleaf", f"-L{lib}", "-l:libhookleaf.so.1"],
                   check=True)
    subprocess.run([*gcc, f"-I{include}", "-o", modules / "hookext.abi3.so", PROGRAMS / "hook_extension.c",
                    "-DMODULE=hookext", "-DCALLS=hookdep_value", f"-L{lib}", "-l:libhookdep.so.1",
                    f"-Wl,-rpath-link,{lib}"], check=True)
    return lib, modules


def venv(python: str, target: Path) -> str:
    subprocess.run([python, "-m", "venv", "--without-pip", str(target)], check=True)
    return str(target / "bin" / "python")


def site_packages(python: str) -> str:
    return subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the Python to measure (default: this one)")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()

    base = {name: value for name, value in os.environ.items()
            if not name.startswith("NIX_LD") and name not in ("LD_LIBRARY_PATH", "LD_PRELOAD", "PYTHONPATH")}
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        lib, modules = build(workdir)
        plain, comment, hooked = (venv(args.python, workdir / name) for name in ("plain", "comment", "hooked"))
        Path(site_packages(comment), "comment.pth").write_text("# a .pth file that does nothing\n")
        subprocess.run([sys.executable, "-m", "nixld", "python-hook", "install", "--python", hooked], check=True,
                       stdout=subprocess.DEVNULL)
        importing = dict(base, PYTHONPATH=str(modules))
        table = [
            ("p", "plain/bin/python -c pass", [plain, "-c", "pass"], base),
            ("c", "comment/bin/python -c pass (a .pth file)", [comment, "-c", "pass"], base),
            ("h", "hooked/bin/python -c pass", [hooked, "-c", "pass"], base),
            ("l", "LD_LIBRARY_PATH=DIR plain: import hookext", [plain, "-c", "import hookext"],
             dict(importing, LD_LIBRARY_PATH=str(lib))),
            ("r", "NIX_LD_LIBRARY_PATH=DIR hooked: import hookext", [hooked, "-c", "import hookext"],
             dict(importing, NIX_LD_LIBRARY_PATH=str(lib))),
        ]
        for _, label, argv, env in table:
            result = subprocess.run(argv, env=env, capture_output=True)
            if result.returncode != 0:
                sys.exit(f"python_hook.py: {label} failed: {result.stderr.decode(errors='replace')}")
        version = subprocess.run([args.python, "--version"], capture_output=True, text=True).stdout.strip()
        rounds = interleaved_rounds([(key, argv, env) for key, _, argv, env in table], args.runs, args.warmup,
                                    random.Random(SEED))

    print(f"{args.runs} interleaved rounds after {args.warmup} warm-up rounds; {version} ({args.python})")
    comparisons = [("h", "p", True), ("c", "p", False), ("h", "c", False), ("r", "l", False)]
    # The same resampling for the report's h/p interval as for the verdict's.
    low, high = bootstrap_ratio(rounds, "h", ("p",), random.Random(SEED))
    passed = report(rounds, {key: label for key, label, _, _ in table}, comparisons, BAR, random.Random(SEED))
    median = {key: statistics.median(r[key] for r in rounds) / 1e6 for key, _, _, _ in table}
    extra = (median["r"] - median["l"]) - (median["h"] - median["p"])
    print(f"\nthe first failing import's extra time (r - l - (h - p)): {extra:.3f} ms")
    ratio = median["h"] / median["p"]
    print(f"VERDICT: {'PASS' if passed else 'FAIL'}: start-up with the hook is {ratio:.3f}x start-up without it "
          f"[{low:.3f}, {high:.3f}], bar {BAR}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
