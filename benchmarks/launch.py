"""Start-up cost of `nixld run` against the floor of any pip-installed Python CLI.

The bar (from the issue): `nixld run` of a trivial foreign program costs at most 1.2x the
floor, where the floor is the interpreter importing `re` (what pip's console-script template
does) plus the loader started by hand. Each command below is the wall time of a whole
process, from posix_spawn to waitpid, in the virtualenv whose interpreter runs this script:

  context  python -S -c pass          the bare interpreter
  context  python -c pass             the interpreter with site (and this venv's .pth files)
  a        python -c "import re"      floor, part 1
  b        LOADER --library-path DIR ./trivial
                                      floor, part 2: the loader started by hand
  c        nixld run ./trivial        the console script: what the bar is about
  d        python -c "import nixld; nixld.exec_foreign('./trivial')"
                                      the library API
  e        python -m nixld run ./trivial
                                      for information

`./trivial` prints a line once its main() has run, and is linked against an interpreter that
does not exist (as on NixOS), compiled with gcc into a temporary directory, the current one of
every command (so the benchmark can be started from anywhere); NIX_LD names the real loader.
Every run, the warm-up's and the timed ones, must exit 0 and print exactly what a complete run
prints (that line for the commands that start ./trivial, nothing for the others), or the
benchmark stops.
The runs are interleaved: each round runs every command once, in a shuffled order, so drift
on a noisy machine falls on all commands alike. A few warm-up rounds are discarded.

Reading the output: the medians are in ms, with the 25th and 75th percentiles to show the
spread. floor = median(a) + median(b). The ratios are medians over the floor; the bracket is
a 95% bootstrap interval (rounds resampled), so a PASS or FAIL whose interval straddles 1.2
is within the noise: run again with more --runs. A FAIL names the commands to look at; then
run `--importtime` to see what the run path imports beyond the floor, heaviest first.
The last line is the verdict; the exit status is 0 on PASS, 1 on FAIL.

Bytecode: the children get PYTHONPYCACHEPREFIX pointing into the temporary directory (and no
PYTHONDONTWRITEBYTECODE), so every module is imported from a cached .pyc after the warm-up,
as after `pip install`, which compiles them; nothing is written next to the sources.
`--no-pyc` measures with compilation from source at every start instead.

`--clean-venv` measures in a throwaway venv where nixld is importable through plain .pth
path lines, as after a regular `pip install`: an editable install's finder, which site runs
at every start of every interpreter in the venv (~8 ms of imports here: pathlib, urllib...),
makes the floor larger and the ratio look better than a user will see it.

    python benchmarks/launch.py [--runs N] [--warmup N] [--importtime] [--clean-venv] [--no-pyc]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys

from measurements import (FOREIGN_INTERPRETER, TRIVIAL_OUTPUT, Command, Ratio, bootstrap_ratio, check,
                          clean_environment, compile_trivial, find_loader, installed_nixld,
                          interleaved_rounds, quantile, scratch_directory, verdict)

BAR = 1.2


def clean_venv(directory: str, python: str, nixld: str) -> tuple[str, str]:
    """A new venv where nixld is importable as from a regular (non-editable) install.

    Its site-packages holds one plain .pth line per directory (the one holding the nixld
    package, the one holding _cffi_backend), which site adds to sys.path without importing
    anything; and bin/nixld is the calling venv's console script with this venv's shebang.
    Returns its (python, nixld).
    """
    import _cffi_backend
    import nixld as package

    venv = os.path.join(directory, "venv")
    subprocess.run([python, "-m", "venv", "--without-pip", venv], check=True)
    new_python = os.path.join(venv, "bin", "python")
    site_packages = subprocess.run(
        [new_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    with open(os.path.join(site_packages, "nixld-benchmark.pth"), "w") as stream:
        stream.write(os.path.dirname(os.path.dirname(os.path.abspath(package.__file__))) + "\n")
        stream.write(os.path.dirname(os.path.abspath(_cffi_backend.__file__)) + "\n")
    with open(nixld) as stream:
        script = stream.read().split("\n", 1)[1]
    new_nixld = os.path.join(venv, "bin", "nixld")
    with open(new_nixld, "w") as stream:
        stream.write(f"#!{new_python}\n{script}")
    os.chmod(new_nixld, 0o755)
    return new_python, new_nixld


def child_environment(loader: str, library_dir: str, pycache: str | None) -> dict[str, str]:
    """The caller's environment with nixld's settings pinned, the same for every command."""
    env = clean_environment(NIX_LD=loader, NIX_LD_LIBRARY_PATH=library_dir)
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def commands(python: str, nixld: str, loader: str, library_dir: str, env: dict[str, str]) -> list[Command]:
    """Every measured command (argv[0] is the file to execute), with what a complete run prints."""
    return [
        Command("S", "python -S -c pass", [python, "-S", "-c", "pass"], env, b""),
        Command("P", "python -c pass", [python, "-c", "pass"], env, b""),
        Command("a", 'python -c "import re"', [python, "-c", "import re"], env, b""),
        Command("b", "LOADER --library-path DIR ./trivial", [loader, "--library-path", library_dir, "./trivial"],
                env, TRIVIAL_OUTPUT),
        Command("c", "nixld run ./trivial", [nixld, "run", "./trivial"], env, TRIVIAL_OUTPUT),
        Command("d", "python -c \"import nixld; nixld.exec_foreign('./trivial')\"",
                [python, "-c", "import nixld; nixld.exec_foreign('./trivial')"], env, TRIVIAL_OUTPUT),
        Command("e", "python -m nixld run ./trivial", [python, "-m", "nixld", "run", "./trivial"], env,
                TRIVIAL_OUTPUT),
    ]


def editable_hooks(python: str, env: dict[str, str]) -> list[str]:
    """The editable-install .pth files that site runs at every start of `python`."""
    code = ("import site, glob, os; print('\\n'.join(os.path.basename(p) for d in site.getsitepackages()"
            " for p in glob.glob(os.path.join(d, '__editable__*.pth'))))")
    result = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True)
    return result.stdout.split()


def benchmark(args, python, nixld, loader, workdir, env) -> int:
    library_dir = os.path.join(workdir, "lib")
    table = commands(python, nixld, loader, library_dir, env)
    for command in table:
        check(command)
    rng = random.Random(20240501)
    rounds = interleaved_rounds(table, args.runs, args.warmup, rng, workdir)

    def ms(value: float) -> str:
        return f"{value / 1e6:7.2f}"

    medians = {command.key: statistics.median(r[command.key] for r in rounds) for command in table}
    print(f"{'':4}{'command':58}{'median':>8}{'p25':>8}{'p75':>8}   (ms)")
    for key, label, *_ in table:
        column = [r[key] for r in rounds]
        tag = "" if key in "SP" else f"{key}."
        print(f"{tag:4}{label:58}{ms(medians[key]):>8}{ms(quantile(column, .25)):>8}"
              f"{ms(quantile(column, .75)):>8}")
    floor = medians["a"] + medians["b"]
    print()
    print(f"floor = median(a) + median(b) = {ms(medians['a']).strip()} + {ms(medians['b']).strip()}"
          f" = {ms(floor).strip()} ms")
    print(f"{'':4}{'ratio to the floor':34}{'median':>8}   {'95% interval':15}{'over the floor':>16}")
    bar = None
    for key, label in (("c", "nixld run"), ("d", "exec_foreign"), ("e", "python -m nixld run")):
        low, high = bootstrap_ratio(rounds, key, ("a", "b"), rng)
        ratio = medians[key] / floor
        extra = f"{(medians[key] - floor) / 1e6:+.2f} ms"
        print(f"{key}.  {label:34}{ratio:8.3f}   [{low:.3f}, {high:.3f}]  {extra:>14}")
        if key == "c":
            bar = Ratio("c/(a+b)", ratio, low, high, BAR)
    print()
    preloaded = subprocess.run([python, "-c", "import sys; print('re' in sys.modules)"], env=env,
                               capture_output=True, text=True).stdout.strip() == "True"
    print(f"context: site and this venv's .pth files cost {ms(medians['P'] - medians['S']).strip()} ms"
          f" (python -c pass minus python -S -c pass); `import re` adds"
          f" {ms(medians['a'] - medians['P']).strip()} ms"
          f"{' (site has imported it already)' if preloaded else ''}.")
    hooks = editable_hooks(python, env)
    if hooks:
        print(f"note: site runs {', '.join(hooks)} at every start in this venv (an editable install);"
              " a regular install has no such hook, so its floor is smaller and the ratio higher:"
              " see --clean-venv.")
    if bar.ratio > BAR:
        print("nixld run is over the bar: `python benchmarks/launch.py --importtime` lists what its"
              " run path imports beyond the floor.")
    return verdict([bar])


def parse_importtime(stderr: str) -> list[tuple[str, int, int]]:
    """(module, self µs, cumulative µs) from -X importtime's lines, in import order."""
    modules = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:"):].split("|")
        modules.append((name.strip(), int(self_us), int(cumulative_us)))
    return modules


def importtime(args, python, nixld, env) -> int:
    """What `nixld run` imports that `python -c "import re"` does not, median over --runs."""
    repeats = max(args.runs // 10, 5)

    def imports(argv: list[str]) -> list[list[tuple[str, int, int]]]:
        runs = []
        for _ in range(repeats + 1):  # the first run fills the bytecode cache
            result = subprocess.run([python, "-X", "importtime", *argv], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if result.returncode != 0:
                sys.exit(f"launch.py: {' '.join(argv)} exited with {result.returncode}:\n{result.stderr}")
            runs.append(parse_importtime(result.stderr))
        return runs[1:]

    floor_modules = {name for run in imports(["-c", "import re"]) for name, _, _ in run}
    # The console script itself, as the kernel runs it: its imports, then nixld.cli's run path
    # up to the exec. -X importtime writes each line as the import ends, so none is lost to it.
    runs = imports([nixld, "run", "./trivial"])
    self_times: dict[str, list[int]] = {}
    cumulative_times: dict[str, list[int]] = {}
    for run in runs:
        for name, self_us, cumulative_us in run:
            if name not in floor_modules:
                self_times.setdefault(name, []).append(self_us)
                cumulative_times.setdefault(name, []).append(cumulative_us)
    rows = sorted(((statistics.median(cumulative_times[name]), statistics.median(self_times[name]), name)
                   for name in self_times), reverse=True)
    total = sum(self_us for _, self_us, _ in rows)
    print(f"modules that `nixld run ./trivial` imports beyond `python -c \"import re\"`:"
          f" {len(rows)}, {total / 1000:.2f} ms of import time in all (medians of {repeats} runs;"
          f" -X importtime inflates them)")
    print(f"{'cumulative':>11}{'self':>8}  module   (µs, heaviest first, top 15)")
    for cumulative_us, self_us, name in rows[:15]:
        print(f"{cumulative_us:11.0f}{self_us:8.0f}  {name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="measured rounds (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="discarded rounds (default 10)")
    parser.add_argument("--importtime", action="store_true",
                        help="instead of timing, list what the run path imports beyond the floor")
    parser.add_argument("--clean-venv", action="store_true",
                        help="measure in a new venv where nixld is a plain path entry, as after a"
                             " regular pip install (no editable-install finder run by site)")
    parser.add_argument("--no-pyc", action="store_true",
                        help="compile every module from source at each start (no bytecode cache)")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2")

    python = sys.executable
    nixld = os.path.join(os.path.dirname(python), "nixld")
    if not os.access(nixld, os.X_OK):
        sys.exit(f"launch.py: no nixld console script next to {python}: install nixld in this venv")
    installed_nixld()
    loader = find_loader()
    with scratch_directory() as workdir:
        os.mkdir(os.path.join(workdir, "lib"))
        compile_trivial(workdir, "trivial", FOREIGN_INTERPRETER)
        if args.clean_venv:
            python, nixld = clean_venv(workdir, python, nixld)
        pycache = None if args.no_pyc else os.path.join(workdir, "pycache")
        env = child_environment(loader, os.path.join(workdir, "lib"), pycache)
        print(f"nixld start-up: {python}{' (a new venv, see --clean-venv)' if args.clean_venv else ''}"
              f" (Python {sys.version.split()[0]}), loader {loader}, "
              f"{os.cpu_count()} CPUs; bytecode {'compiled at every start' if args.no_pyc else 'cached'}")
        if args.importtime:
            return importtime(args, python, nixld, env)
        print(f"{args.runs} interleaved rounds (+{args.warmup} discarded), each command once per round"
              f" in a shuffled order; wall time posix_spawn -> waitpid")
        print()
        return benchmark(args, python, nixld, loader, workdir, env)

if __name__ == "__main__":
    sys.dont_write_bytecode = True  # a benchmark leaves no files behind
    sys.exit(main())
