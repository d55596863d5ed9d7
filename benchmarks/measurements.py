"""What the benchmarks share: where they run, the programs they start and how a run is checked,
the foreign interpreter, the host's loader, the statistics and the closing verdict."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import namedtuple

# An interpreter that exists on no machine: the kernel refuses programs linked with it.
FOREIGN_INTERPRETER = "/nix/store/00000000000000000000000000000000-glibc-2.36/lib/ld-linux-x86-64.so.2"

# What the benchmarks' trivial program prints, with one write(2), when its main() has run: an
# exit status of 0 alone is also what a wrapper that starts nothing, or the loader's own help,
# can give.
TRIVIAL_OUTPUT = b"nixld benchmark: main() ran\n"
# json.dumps writes it as a C string literal too.
TRIVIAL_C = (f"#include <unistd.h>\nstatic const char done[] = {json.dumps(TRIVIAL_OUTPUT.decode())};\n"
             "int main(void) { return write(1, done, sizeof done - 1) != sizeof done - 1; }\n")

# One measured command: `expected` is the standard output a complete run prints (None: its
# output is not looked at), `allowed` the exit statuses a complete run gives.
Command = namedtuple("Command", "key label argv env expected allowed", defaults=(None, (0,)))


def name() -> str:
    return os.path.basename(sys.argv[0])


@contextlib.contextmanager
def scratch_directory():
    """A new temporary directory, the current one while the benchmark runs, removed at the end.

    From a source checkout's root, `python -m nixld` and `python -c 'import nixld'` would import
    the uncompiled tree in ./nixld (Python puts the current directory first on sys.path): every
    child started from here imports the installed nixld, whatever directory the benchmark was
    started from."""
    previous = os.getcwd()
    workdir = tempfile.mkdtemp(prefix="nixld-bench-")
    os.chdir(workdir)
    try:
        yield workdir
    finally:
        os.chdir(previous)
        shutil.rmtree(workdir, ignore_errors=True)


def installed_nixld():
    """The nixld package this interpreter imports; exits when it is not a built installation."""
    import nixld
    from nixld._execve import c_core_unavailable

    why = c_core_unavailable()
    if why:
        sys.exit(f"{name()}: nixld imported from {os.path.dirname(nixld.__file__)} is not built ({why}):"
                 " install it in this venv with `pip install .`")
    return nixld


def find_loader() -> str:
    """The host's own dynamic loader: PT_INTERP of this interpreter's executable."""
    from nixld import elf

    interpreter = elf.read_header(os.fsencode(os.path.realpath(sys.executable))).interpreter
    if interpreter is None:
        sys.exit(f"{name()}: this Python is statically linked; cannot find the host's loader")
    return os.fsdecode(interpreter)


def compile_trivial(directory: str, program: str, interpreter: str) -> str:
    """The trivial program (it prints TRIVIAL_OUTPUT) compiled with gcc into `directory`, with
    `interpreter` as its PT_INTERP; returns its path."""
    source = os.path.join(directory, "trivial.c")
    with open(source, "w") as stream:
        stream.write(TRIVIAL_C)
    path = os.path.join(directory, program)
    subprocess.run(["gcc", "-O2", "-o", path, source, f"-Wl,--dynamic-linker={interpreter}"], check=True)
    return path


def clean_environment(**variables: str) -> dict[str, str]:
    """The caller's environment without nixld's settings and the loader's variables, plus
    `variables`."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("NIX_LD") and key not in ("LD_LIBRARY_PATH", "LD_PRELOAD")}
    env.update(variables)
    return env


def check(command: Command) -> None:
    """Run `command` once, output kept: exits, saying why, unless it did its work (an allowed
    exit status and, when one is expected, exactly the expected output)."""
    result = subprocess.run(command.argv, env=command.env, capture_output=True)
    why = _why_not_done(command, result.returncode, result.stdout)
    if why:
        sys.exit(f"{name()}: {command.label}: {why}\n{result.stderr.decode(errors='replace')[-2000:]}")


def _why_not_done(command: Command, status: int, output: bytes | None) -> str | None:
    if status not in command.allowed:
        ended = f"was killed by signal {-status}" if status < 0 else f"exited with {status}"
        return f"it {ended}, not {' or '.join(map(str, command.allowed))}"
    if command.expected is not None and output != command.expected:
        return f"it printed {output[:200]!r}, not {command.expected!r}: its program did not run as it should"
    return None


def spawn_time_ns(command: Command, output: str | None = None) -> int:
    """The wall time of one whole process, from posix_spawn to waitpid, stderr to /dev/null and
    stdout to the file `output` (else /dev/null), which is checked afterwards; exits the benchmark
    when the run did not do its work (a failing command measures nothing)."""
    actions = [(os.POSIX_SPAWN_OPEN, 1, output or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
               (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
    start = time.perf_counter_ns()
    pid = os.posix_spawn(command.argv[0], command.argv, command.env, file_actions=actions)
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter_ns() - start
    printed = None
    if output is not None and command.expected is not None:
        with open(output, "rb") as stream:
            printed = stream.read()
    why = _why_not_done(command, os.waitstatus_to_exitcode(status), printed)
    if why:
        sys.exit(f"{name()}: {command.label} failed during the benchmark: {why}")
    return elapsed


def interleaved_rounds(commands: list[Command], runs: int, warmup: int, rng: random.Random,
                       workdir: str) -> list[dict[str, int]]:
    """Time each command once per round, in a shuffled order, so that drift on a noisy machine
    falls on all alike; `warmup` rounds are discarded. Every run's output is checked. Returns
    one {key: ns} per kept round."""
    output = os.path.join(workdir, "output")
    rounds = []
    for index in range(warmup + runs):
        order = list(commands)
        rng.shuffle(order)
        timings = {command.key: spawn_time_ns(command, output) for command in order}
        if index >= warmup:
            rounds.append(timings)
    return rounds


def quantile(values, q: float) -> float:
    """The q-quantile of `values`, interpolated between neighbours."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def bootstrap_ratio(rounds, numerator, denominators: tuple, rng: random.Random | None = None,
                    resamples: int = 2000) -> tuple[float, float]:
    """95% interval of median(numerator) / the sum of median(each denominator), resampling
    whole rounds (each round maps a key to its measurement) to keep a round's values together."""
    rng = rng or random.Random(20240501)
    count = len(rounds)
    ratios = []
    for _ in range(resamples):
        sample = [rounds[rng.randrange(count)] for _ in range(count)]
        top = statistics.median(r[numerator] for r in sample)
        bottom = sum(statistics.median(r[key] for r in sample) for key in denominators)
        ratios.append(top / bottom)
    return quantile(ratios, 0.025), quantile(ratios, 0.975)


# A measured ratio and its bar: `at_most` says which side of `limit` passes (None: no bar).
Ratio = namedtuple("Ratio", "what ratio low high limit at_most", defaults=(None, True))


def ratio_of(rounds, numerator: str, denominator: str, rng: random.Random, limit: float | None = None,
             at_most: bool = True) -> Ratio:
    """median(numerator) / median(denominator) over `rounds`, with its 95% bootstrap interval."""
    medians = [statistics.median(r[key] for r in rounds) for key in (numerator, denominator)]
    low, high = bootstrap_ratio(rounds, numerator, (denominator,), rng)
    return Ratio(f"{numerator}/{denominator}", medians[0] / medians[1], low, high, limit, at_most)


def passes(ratio: Ratio) -> bool:
    return ratio.limit is None or (ratio.ratio <= ratio.limit if ratio.at_most else ratio.ratio >= ratio.limit)


def describe(ratio: Ratio) -> str:
    """`what = r [low, high]`, then the bar and PASS or FAIL (or "for information")."""
    text = f"{ratio.what} = {ratio.ratio:.3f} [{ratio.low:.3f}, {ratio.high:.3f}]"
    if ratio.limit is None:
        return text + " (for information)"
    text += f", bar {'<=' if ratio.at_most else '>='} {ratio.limit:g}: {'PASS' if passes(ratio) else 'FAIL'}"
    if ratio.low <= ratio.limit <= ratio.high:
        text += " (the interval straddles the bar: noise; rerun with more --runs)"
    return text


def report(rounds, labels: dict[str, str], comparisons: list[Ratio]) -> None:
    """Print each command's median and quartiles (ms), then each comparison."""
    medians = {key: statistics.median(r[key] for r in rounds) for key in labels}
    print(f"{'':4}{'command':50}{'median':>9}{'p25':>9}{'p75':>9}   (ms)")
    for key, label in labels.items():
        column = [r[key] for r in rounds]
        print(f"{key + '.':4}{label:50}{medians[key] / 1e6:>9.3f}{quantile(column, .25) / 1e6:>9.3f}"
              f"{quantile(column, .75) / 1e6:>9.3f}")
    print()
    for comparison in comparisons:
        print(describe(comparison))


def verdict(bars: list[Ratio]) -> int:
    """Print the closing line, every bar's ratio with its 95% interval, and return the exit
    status: 0 when every bar holds, 1 otherwise."""
    passed = all(passes(bar) for bar in bars)
    print(f"VERDICT {name()}: {'PASS' if passed else 'FAIL'}: " + "; ".join(describe(bar) for bar in bars))
    return 0 if passed else 1
