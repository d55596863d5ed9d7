"""Start-up cost of `nixld wrap`'s sh script against a hand-written one-line sh script.

The bar (from the issue): a trivial foreign program started through the sh wrapper costs at
most 1.1x the same launch written by hand as a one-line `#!/bin/sh` exec. Both are printed
against the loader started by hand as well, where a shell costs about one more program start:

  h  LOADER --library-path DIR ./trivial   the loader started by hand
  m  ./by-hand.sh                          #!/bin/sh, then exec LOADER --library-path DIR
                                           --argv0 "$0" ./trivial "$@": a script written by hand
  s  ./trivial-wrapped.sh                  nixld wrap --format sh (-L DIR)
  b  ./trivial-wrapped                     nixld wrap --format binary, for comparison

Interleaved rounds, medians in ms, ratios with a 95% bootstrap interval, as in
benchmarks/shim.py. Exit status 0 when the bar holds, 1 otherwise.

    python benchmarks/wrap.py [--runs N] [--warmup N]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile

from measurements import FOREIGN_INTERPRETER, find_loader, interleaved_rounds, report

BAR = 1.1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()

    loader = find_loader()
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("NIX_LD") and name not in ("LD_LIBRARY_PATH", "LD_PRELOAD")}
    env["NIX_LD"] = loader
    with tempfile.TemporaryDirectory() as workdir:
        library_dir = os.path.join(workdir, "lib")
        os.mkdir(library_dir)
        env["NIX_LD_LIBRARY_PATH"] = library_dir
        source = os.path.join(workdir, "trivial.c")
        with open(source, "w") as stream:
            stream.write("int main(void){return 0;}\n")
        program = os.path.join(workdir, "trivial")
        subprocess.run(["gcc", "-O2", "-o", program, source, f"-Wl,--dynamic-linker={FOREIGN_INTERPRETER}"],
                       check=True)
        by_hand = os.path.join(workdir, "by-hand.sh")
        with open(by_hand, "w") as stream:
            stream.write(f'#!/bin/sh\nexec {loader} --library-path {library_dir} --argv0 "$0" {program} "$@"\n')
        os.chmod(by_hand, 0o755)
        wrapped = {}
        for fmt, name in (("sh", "trivial-wrapped.sh"), ("binary", "trivial-wrapped")):
            wrapped[fmt] = os.path.join(workdir, name)
            subprocess.run([sys.executable, "-m", "nixld", "wrap", "--format", fmt, "-o", wrapped[fmt], program],
                           env=env, check=True, stdout=subprocess.DEVNULL)
        table = [
            ("h", "LOADER --library-path DIR ./trivial", [loader, "--library-path", library_dir, program]),
            ("m", "./by-hand.sh (one exec line, written by hand)", [by_hand]),
            ("s", "./trivial-wrapped.sh (nixld wrap --format sh)", [wrapped["sh"]]),
            ("b", "./trivial-wrapped (nixld wrap --format binary)", [wrapped["binary"]]),
        ]
        for _, label, argv in table:
            result = subprocess.run(argv, env=env, capture_output=True)
            if result.returncode != 0:
                sys.exit(f"wrap.py: {label} exited with {result.returncode}: {result.stderr.decode()}")
        rng = random.Random(20241126)
        rounds = interleaved_rounds([(key, argv, env) for key, _, argv in table], args.runs, args.warmup, rng)

    print(f"{args.runs} interleaved rounds after {args.warmup} warm-up rounds; loader {loader}")
    comparisons = [("s", "m", True), ("s", "h", False), ("m", "h", False), ("b", "h", False)]
    return 0 if report(rounds, {key: label for key, label, _ in table}, comparisons, BAR, rng) else 1


if __name__ == "__main__":
    sys.exit(main())
