"""Start-up cost of `nixld wrap`'s sh script against a hand-written one-line sh script.

The bar (from the issue): a trivial foreign program started through the sh wrapper costs at
most 1.1x the same launch written by hand as a one-line `#!/bin/sh` exec. Both are printed
against the loader started by hand as well, where a shell costs about one more program start:

  h  LOADER --library-path DIR ./trivial   the loader started by hand
  m  ./by-hand.sh                          #!/bin/sh, then exec LOADER --library-path DIR
                                           --argv0 "$0" ./trivial "$@": a script written by hand
  s  ./trivial-wrapped.sh                  nixld wrap --format sh (-L DIR)
  b  ./trivial-wrapped                     nixld wrap --format binary, for comparison

Every command runs the same program, which prints a line when its main() has run: each run,
the warm-up's and the timed ones, must print exactly that line and exit 0, or the benchmark
stops (a wrapper that starts nothing would otherwise be fast). Interleaved rounds, medians in
ms, ratios with a 95% bootstrap interval, as in benchmarks/shim.py; the last line is the
verdict. Children run in a scratch directory, so the benchmark can be started from anywhere
(from a checkout's root too). Exit status 0 when the bar holds, 1 otherwise.

    python benchmarks/wrap.py [--runs N] [--warmup N]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys

from measurements import (FOREIGN_INTERPRETER, TRIVIAL_OUTPUT, Command, check, clean_environment, compile_trivial,
                          find_loader, installed_nixld, interleaved_rounds, ratio_of, report, scratch_directory,
                          verdict)

BAR = 1.1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()

    installed_nixld()
    loader = find_loader()
    with scratch_directory() as workdir:
        library_dir = os.path.join(workdir, "lib")
        os.mkdir(library_dir)
        env = clean_environment(NIX_LD=loader, NIX_LD_LIBRARY_PATH=library_dir)
        program = compile_trivial(workdir, "trivial", FOREIGN_INTERPRETER)
        by_hand = os.path.join(workdir, "by-hand.sh")
        with open(by_hand, "w") as stream:
            stream.write(f'#!/bin/sh\nexec {loader} --library-path {library_dir} --argv0 "$0" {program} "$@"\n')
        os.chmod(by_hand, 0o755)
        wrapped = {}
        for fmt, name in (("sh", "trivial-wrapped.sh"), ("binary", "trivial-wrapped")):
            wrapped[fmt] = os.path.join(workdir, name)
            result = subprocess.run([sys.executable, "-m", "nixld", "wrap", "--format", fmt, "-o", wrapped[fmt],
                                     program], env=env, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"wrap.py: nixld wrap --format {fmt} failed ({result.returncode}): {result.stderr.strip()}")
        table = [
            Command("h", "LOADER --library-path DIR ./trivial", [loader, "--library-path", library_dir, program],
                    env, TRIVIAL_OUTPUT),
            Command("m", "./by-hand.sh (one exec line, written by hand)", [by_hand], env, TRIVIAL_OUTPUT),
            Command("s", "./trivial-wrapped.sh (nixld wrap --format sh)", [wrapped["sh"]], env, TRIVIAL_OUTPUT),
            Command("b", "./trivial-wrapped (nixld wrap --format binary)", [wrapped["binary"]], env, TRIVIAL_OUTPUT),
        ]
        for command in table:
            check(command)
        rng = random.Random(20241126)
        rounds = interleaved_rounds(table, args.runs, args.warmup, rng, workdir)

    print(f"{args.runs} interleaved rounds after {args.warmup} warm-up rounds; loader {loader}")
    bar = ratio_of(rounds, "s", "m", rng, BAR)
    report(rounds, {command.key: command.label for command in table},
           [bar, ratio_of(rounds, "s", "h", rng), ratio_of(rounds, "m", "h", rng), ratio_of(rounds, "b", "h", rng)])
    return verdict([bar])


if __name__ == "__main__":
    sys.exit(main())
