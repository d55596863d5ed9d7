"""What the benchmarks share: the foreign interpreter, the host's loader, and the statistics."""

from __future__ import annotations

import os
import random
import statistics
import sys
import time

# An interpreter that exists on no machine: the kernel refuses programs linked with it.
FOREIGN_INTERPRETER = "/nix/store/00000000000000000000000000000000-glibc-2.36/lib/ld-linux-x86-64.so.2"


def find_loader() -> str:
    """The host's own dynamic loader: PT_INTERP of this interpreter's executable."""
    from nixld import elf

    interpreter = elf.read_header(os.fsencode(os.path.realpath(sys.executable))).interpreter
    if interpreter is None:
        sys.exit(f"{os.path.basename(sys.argv[0])}: this Python is statically linked;"
                 " cannot find the host's loader")
    return os.fsdecode(interpreter)


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


def spawn_time_ns(argv: list[str], env: dict[str, str], file_actions) -> int:
    """The wall time of one whole process, from posix_spawn to waitpid; exits the benchmark
    if it fails (a failing command measures nothing)."""
    start = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=file_actions)
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter_ns() - start
    if status != 0:
        sys.exit(f"{os.path.basename(sys.argv[0])}: {' '.join(argv)} failed during the benchmark "
                 f"(wait status {status})")
    return elapsed


def interleaved_rounds(commands, runs: int, warmup: int, rng: random.Random) -> list[dict[str, int]]:
    """Time each of `commands` ((key, argv, env) triples) once per round, in a shuffled order,
    so that drift on a noisy machine falls on all alike; `warmup` rounds are discarded. Output
    goes to /dev/null. Returns one {key: ns} per kept round."""
    devnull = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
               (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
    rounds = []
    for index in range(warmup + runs):
        order = list(commands)
        rng.shuffle(order)
        timings = {key: spawn_time_ns(argv, env, devnull) for key, argv, env in order}
        if index >= warmup:
            rounds.append(timings)
    return rounds


def report(rounds, labels: dict[str, str], comparisons, bar: float, rng: random.Random) -> bool:
    """Print each command's median and quartiles (ms), then each comparison (key, baseline,
    whether the bar applies) as a ratio of medians with its 95% bootstrap interval; returns
    whether every bar holds."""
    medians = {key: statistics.median(r[key] for r in rounds) for key in labels}
    print(f"{'':4}{'command':50}{'median':>9}{'p25':>9}{'p75':>9}   (ms)")
    for key, label in labels.items():
        column = [r[key] for r in rounds]
        print(f"{key + '.':4}{label:50}{medians[key] / 1e6:>9.3f}{quantile(column, .25) / 1e6:>9.3f}"
              f"{quantile(column, .75) / 1e6:>9.3f}")
    print()
    passed = True
    for key, baseline, has_bar in comparisons:
        low, high = bootstrap_ratio(rounds, key, (baseline,), rng)
        ratio = medians[key] / medians[baseline]
        verdict = ("PASS" if ratio <= bar else "FAIL") + f" (bar {bar})" if has_bar else "(information)"
        passed = passed and (ratio <= bar or not has_bar)
        print(f"{key}/{baseline} = {ratio:.3f}  [{low:.3f}, {high:.3f}]  {verdict}")
    return passed
