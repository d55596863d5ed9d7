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
  w  ./trivial-wrapper                    `nixld wrap --format binary` of the foreign program,
                                          when the installation has the launcher: against h

`./trivial-*` are `int main(void){return 0;}`. The runs are interleaved: each round runs every
command once, in a shuffled order, so drift on a noisy machine falls on all alike; a few
warm-up rounds are discarded. Medians in ms with the 25th and 75th percentiles; each ratio's
bracket is a 95% bootstrap interval over rounds: an interval that straddles the bar is noise,
run again with more --runs. Exit status 0 when every bar holds, 1 otherwise.

    python benchmarks/shim.py [--runs N] [--warmup N]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile

from measurements import FOREIGN_INTERPRETER, find_loader, interleaved_rounds, report

import nixld

TRIVIAL_C = "int main(void){return 0;}\n"
BAR = 1.1


def compile_program(directory: str, name: str, interpreter: str) -> str:
    source = os.path.join(directory, "trivial.c")
    with open(source, "w") as stream:
        stream.write(TRIVIAL_C)
    program = os.path.join(directory, name)
    subprocess.run(["gcc", "-O2", "-o", program, source, f"-Wl,--dynamic-linker={interpreter}"], check=True)
    return program


def binary_wrapper(directory: str, foreign: str, loader: str, library_dir: str) -> str | None:
    """`nixld wrap --format binary` of `foreign`, or None where nixld has no such command yet."""
    wrapper = os.path.join(directory, "trivial-wrapper")
    result = subprocess.run([sys.executable, "-m", "nixld", "wrap", "--format", "binary", "--ld", loader,
                             "-L", library_dir, "-o", wrapper, foreign], capture_output=True, text=True)
    return wrapper if result.returncode == 0 else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()

    loader = find_loader()
    base = {name: value for name, value in os.environ.items()
            if not name.startswith("NIX_LD") and name not in ("LD_LIBRARY_PATH", "LD_PRELOAD")}
    with tempfile.TemporaryDirectory() as workdir:
        library_dir = os.path.join(workdir, "lib")
        os.mkdir(library_dir)
        native = compile_program(workdir, "trivial-native", loader)
        shimmed = compile_program(workdir, "trivial-shim", nixld.shim_path())
        foreign = compile_program(workdir, "trivial-foreign", FOREIGN_INTERPRETER)
        with_path = {**base, "NIX_LD": loader, "NIX_LD_LIBRARY_PATH": library_dir}
        without_path = {**base, "NIX_LD": loader, "NIX_LD_LIBRARY_PATH": ":"}
        table = [
            ("n", "./trivial-native", [native], base),
            ("l", "./trivial-native, LD_LIBRARY_PATH=DIR", [native], {**base, "LD_LIBRARY_PATH": library_dir}),
            ("s", "./trivial-shim, NIX_LD_LIBRARY_PATH=DIR", [shimmed], with_path),
            ("p", "./trivial-shim, no library path", [shimmed], without_path),
            ("h", "LOADER --library-path DIR ./trivial-native", [loader, "--library-path", library_dir, native], base),
        ]
        wrapper = binary_wrapper(workdir, foreign, loader, library_dir)
        if wrapper:
            table.append(("w", "./trivial-wrapper (nixld wrap --format binary)", [wrapper], base))
        for _, label, argv, env in table:
            result = subprocess.run(argv, env=env, capture_output=True)
            if result.returncode != 0:
                sys.exit(f"shim.py: {label} exited with {result.returncode}: {result.stderr.decode()}")

        rng = random.Random(20241126)
        rounds = interleaved_rounds([(key, argv, env) for key, _, argv, env in table], args.runs, args.warmup, rng)

    print(f"{args.runs} interleaved rounds after {args.warmup} warm-up rounds; loader {loader}")
    comparisons = [("s", "l", True), ("p", "n", True), ("s", "n", False), ("h", "n", False)]
    if wrapper:
        comparisons.append(("w", "h", True))
    return 0 if report(rounds, {key: label for key, label, *_ in table}, comparisons, BAR, rng) else 1


if __name__ == "__main__":
    sys.exit(main())
