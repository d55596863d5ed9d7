"""Start-up cost of a program started through nixld's shim, against the same program with the
real loader as its interpreter.

The bar (from the issue): a trivial program started through the shim costs at most 1.1x the
same program built with the real loader as its interpreter, doing the same work: s against l
(both search DIR), p against n (neither searches anything). s against n, which adds the
search of DIR to the shim's own cost, is printed for information. Each command is the wall
time of a whole process, from posix_spawn to waitpid:

  n  ./trivial-native                     baseline: PT_INTERP is the real loader
  l  ./trivial-native, LD_LIBRARY_PATH=DIR
                                          baseline with the library directory s passes: the
                                          loader then searches DIR first, as under s
  s  ./trivial-shim, NIX_LD_LIBRARY_PATH=DIR
                                          the shim, lending the loader a library path: one
                                          envp slot changed, put back by the trampoline
  p  ./trivial-shim, no library path      the shim with nothing to pass (NIX_LD_LIBRARY_PATH
                                          names no directory): the loader mapped, no trampoline
  h  LOADER --library-path DIR ./trivial-native
                                          for information: the loader started by hand, as
                                          `nixld run`, a wrapper script and design (b) (the
                                          loader's by-hand mode entered from the shim) do: the
                                          loader maps the program itself
  w  ./trivial-wrapper                    `nixld wrap --format binary` of the foreign program:
                                          against h. A wrap that fails ends the benchmark.

`./trivial-*` are one program, which prints a line once its main() has run: every run, the
warm-up's and the timed ones, must print exactly that line and exit 0, or the benchmark stops
(a shim or wrapper that starts nothing would otherwise be fast). The runs are interleaved: each
round runs every command once, in a shuffled order, so drift on a noisy machine falls on all
alike; a few warm-up rounds are discarded. Medians in ms with the 25th and 75th percentiles;
each ratio's bracket is a 95% bootstrap interval over rounds: an interval that straddles the bar
is noise, run again with more --runs. The last line is the verdict. Children run in a scratch
directory, so the benchmark can be started from anywhere. Exit status 0 when every bar holds,
1 otherwise.

    python benchmarks/shim.py [--runs N] [--warmup N]
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


def binary_wrapper(directory: str, foreign: str, loader: str, library_dir: str) -> str:
    """`nixld wrap --format binary` of `foreign`; exits when nixld cannot make it."""
    wrapper = os.path.join(directory, "trivial-wrapper")
    result = subprocess.run([sys.executable, "-m", "nixld", "wrap", "--format", "binary", "--ld", loader,
                             "-L", library_dir, "-o", wrapper, foreign], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"shim.py: nixld wrap --format binary failed ({result.returncode}): {result.stderr.strip()}")
    return wrapper


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()

    nixld = installed_nixld()
    loader = find_loader()
    base = clean_environment()
    with scratch_directory() as workdir:
        library_dir = os.path.join(workdir, "lib")
        os.mkdir(library_dir)
        native = compile_trivial(workdir, "trivial-native", loader)
        shimmed = compile_trivial(workdir, "trivial-shim", nixld.shim_path())
        foreign = compile_trivial(workdir, "trivial-foreign", FOREIGN_INTERPRETER)
        with_path = {**base, "NIX_LD": loader, "NIX_LD_LIBRARY_PATH": library_dir}
        without_path = {**base, "NIX_LD": loader, "NIX_LD_LIBRARY_PATH": ":"}
        table = [
            Command("n", "./trivial-native", [native], base, TRIVIAL_OUTPUT),
            Command("l", "./trivial-native, LD_LIBRARY_PATH=DIR", [native], {**base, "LD_LIBRARY_PATH": library_dir},
                    TRIVIAL_OUTPUT),
            Command("s", "./trivial-shim, NIX_LD_LIBRARY_PATH=DIR", [shimmed], with_path, TRIVIAL_OUTPUT),
            Command("p", "./trivial-shim, no library path", [shimmed], without_path, TRIVIAL_OUTPUT),
            Command("h", "LOADER --library-path DIR ./trivial-native", [loader, "--library-path", library_dir, native],
                    base, TRIVIAL_OUTPUT),
            Command("w", "./trivial-wrapper (nixld wrap --format binary)",
                    [binary_wrapper(workdir, foreign, loader, library_dir)], base, TRIVIAL_OUTPUT),
        ]
        for command in table:
            check(command)
        rng = random.Random(20241126)
        rounds = interleaved_rounds(table, args.runs, args.warmup, rng, workdir)

    print(f"{args.runs} interleaved rounds after {args.warmup} warm-up rounds; loader {loader}")
    bars = [ratio_of(rounds, "s", "l", rng, BAR), ratio_of(rounds, "p", "n", rng, BAR),
            ratio_of(rounds, "w", "h", rng, BAR)]
    report(rounds, {command.key: command.label for command in table},
           bars + [ratio_of(rounds, "s", "n", rng), ratio_of(rounds, "h", "n", rng)])
    return verdict(bars)


if __name__ == "__main__":
    sys.exit(main())
