"""Does nixld's C exec core earn its place? The time from the exec call to the new main().

nixld execs through `nixld._execve.execve(path, argv, env_entries)`: Python joins argv and the
environment into NUL-separated blocks and a small C function (cffi, imported on that first
call) resets SIGPIPE and SIGXFSZ, which CPython ignores, splits the blocks into the pointer
arrays execve(2) wants and calls it. Without the compiled core, nixld falls back to
`import signal`, resetting the same two signals, and `os.execve(path, list(argv),
dict(entry.split(b"=", 1) ...))`. This measures both, from "just before the call in Python" to "first
statement of main() in the new program", with environments of 50, 500 and 5,000 variables
(each `NIXLD_BENCH_nnnnn=` and 40 characters; `--sizes` to change).

How: each measurement is a fresh interpreter, started with the environment to test, that
imports nixld and prepares as `nixld run` does; it then stores time.monotonic_ns() in a small
file it has mapped into memory and calls the exec function at once. The exec'd program `stamp`
(benchmarks/stamp.c, compiled with gcc into a temporary directory) prints
clock_gettime(CLOCK_MONOTONIC), the same clock, first thing in main(). (A fresh process, not a
fork of a long-lived one: in a forked child every first write to memory is a copy-on-write
fault, which inflates whatever touches more memory before the exec.) Variants:

  C core        nixld._execve.execve(STAMP, argv, entries): the C core's import included
  os fallback   nixld._execve._execve_with_os(STAMP, argv, entries): what nixld does without
                    the C core, `import signal` included
  os.execve     os.execve(STAMP, list(argv), os.environb): for reference; it leaves SIGPIPE
                    ignored in the program, which nixld must not do
                    STAMP is linked statically: no loader work is measured in these three.
  exec_foreign  nixld.exec_foreign(FOREIGN_STAMP)
                    informational: planning, exec_plan, then the real loader and libc start.
  planned       nixld._execve.execve(plan.executable, plan.argv, plan.env), the plan made
                    before the clock starts; informational: the same loader work, no planning.

`entries` is the environment block as a launch plan holds it (NAME=value entries), so each
variant pays for its own conversion. Rounds are interleaved (every size and variant once per round, in a shuffled
order), so drift on a noisy machine falls on all alike; a few warm-up rounds are discarded.

Each run must show that the program it exec'd is stamp and that stamp started: the child exits
0, it stored its start time, and stamp printed one clock reading, later than that time; else
the benchmark stops.

Reading the output: medians in µs with the 25th and 75th percentiles. Each size compares C core
with os fallback: the 95% bootstrap interval of the ratio of their medians (rounds resampled,
which keeps each round's pair together) says which is faster. Entirely below 1: the C core is
faster; entirely above: slower; containing 1: equal within the noise. The bar, on the last
line: at every size, the C core takes at most as long as the os fallback (ratio <= 1); else it
does not earn its place on speed (it still keeps an environment block entry for entry, which
os.execve's mapping cannot). The difference is also
set against the interquartile ranges, to show its size next to the noise; for scale, a whole
`nixld run` takes some 15-20 ms here (benchmarks/launch.py).
The Python-side preparation alone is timed in-process too (building the two blocks; the dict
the os fallback builds from the entries). os.execve's own conversion of the dict happens in C inside the call and cannot
be timed apart from the exec, so the end-to-end numbers are the comparison that counts.
Last, for scale, what importing the core (nixld._exec and _cffi_backend) costs, from
-X importtime; it is inside the C core's numbers above.

Children run in a scratch directory, so the benchmark can be started from anywhere (from a
checkout's root, `python -c 'import nixld'` would import the uncompiled tree).

    python benchmarks/exec_core.py [--runs N] [--warmup N] [--sizes 50,500,5000]
"""

from __future__ import annotations

import os
import sys

from measurements import (FOREIGN_INTERPRETER, Ratio, bootstrap_ratio, find_loader, installed_nixld, quantile,
                          scratch_directory, verdict)

VARIANTS = ("C core", "os fallback", "os.execve", "exec_foreign", "planned")
VALUE = "x" * 40
BAR = 1.0


def child(variant: str, stamp_file: str, static_stamp: str, foreign_stamp: str) -> None:
    """Runs in a fresh interpreter with the environment under test: prepares as `nixld run`
    does, stores monotonic_ns() in the shared stamp file, and execs at once."""
    import importlib.util
    import mmap
    import struct
    import time

    import nixld
    from nixld import _execve

    if importlib.util.find_spec("nixld._exec") is None:  # importing it would start the clock late
        sys.exit("exec_core.py: nixld's C core (nixld._exec) is not built in this environment")
    static = os.fsencode(static_stamp)
    argv = (static,)
    entries = tuple(name + b"=" + value for name, value in os.environb.items())
    if variant == "planned":
        plan = nixld.plan_launch(foreign_stamp)
    fd = os.open(stamp_file, os.O_RDWR)
    shared = mmap.mmap(fd, 8)
    store = struct.Struct("q").pack_into
    now = time.monotonic_ns
    if variant == "C core":
        store(shared, 0, now())
        _execve.execve(static, argv, entries)
    elif variant == "os fallback":
        store(shared, 0, now())
        _execve._execve_with_os(static, argv, entries)
    elif variant == "os.execve":
        store(shared, 0, now())
        os.execve(static, list(argv), os.environb)
    elif variant == "exec_foreign":
        store(shared, 0, now())
        nixld.exec_foreign(foreign_stamp)
    elif variant == "planned":
        store(shared, 0, now())
        _execve.execve(plan.executable, plan.argv, plan.env)
    sys.exit(f"exec_core.py: unknown variant {variant!r}")


def environment(size: int, loader: str, library_dir: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", os.defpath), "NIX_LD": loader, "NIX_LD_LIBRARY_PATH": library_dir}
    if "HOME" in os.environ:
        env["HOME"] = os.environ["HOME"]
    # Without a UTF-8 LC_CTYPE, Python's locale coercion (PEP 538) would add one variable.
    env["LC_CTYPE"] = "C.UTF-8"
    if size < len(env):
        raise SystemExit(f"exec_core.py: an environment needs at least {len(env)} variables")
    for number in range(size - len(env)):
        env[f"NIXLD_BENCH_{number:05d}"] = VALUE
    return env


def compile_stamps(directory: str) -> tuple[str, str]:
    import subprocess

    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stamp.c")
    static = os.path.join(directory, "stamp-static")
    foreign = os.path.join(directory, "stamp-foreign")
    subprocess.run(["gcc", "-O2", "-static", "-o", static, source], check=True)
    subprocess.run(["gcc", "-O2", "-o", foreign, source, f"-Wl,--dynamic-linker={FOREIGN_INTERPRETER}"],
                   check=True)
    return static, foreign


def preparation_us(size: int) -> tuple[float, float]:
    """In-process µs of the Python-side preparation: the C core's two blocks, and the os
    fallback's dict."""
    import statistics
    import timeit

    from nixld import _execve

    argv = (b"/bin/stamp",)
    entries = tuple(f"NIXLD_BENCH_{n:05d}={VALUE}".encode() for n in range(size))

    def blocks():
        _execve._block(argv, "argument")
        _execve._block(entries, "environment variable")

    def os_dict():
        list(argv)
        dict(entry.split(b"=", 1) for entry in entries if b"=" in entry)

    results = []
    for function in (blocks, os_dict):
        timer = timeit.Timer(function)
        number, _ = timer.autorange()
        results.append(statistics.median(timer.repeat(7, number)) / number * 1e6)
    return results[0], results[1]


def measure(sizes: list[int], args, workdir: str, static: str, foreign: str,
            loader: str) -> dict[int, list[list[int]]]:
    """{size: one [ns per variant] list per round}, every (size, variant) once a round."""
    import random

    library_dir = os.path.join(workdir, "lib")
    environments = {size: environment(size, loader, library_dir) for size in sizes}
    stamp_file = os.path.join(workdir, "stamp-time")
    with open(stamp_file, "wb") as stream:
        stream.write(bytes(8))
    stamp_fd = os.open(stamp_file, os.O_RDWR)
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)  # a stamp that printed nothing must not hang the benchmark
    actions = [(os.POSIX_SPAWN_DUP2, write_end, 1)]
    # -X pycache_prefix: cached bytecode for the children without a variable in their
    # environment, and without files next to the sources.
    base = [sys.executable, "-X", f"pycache_prefix={os.path.join(workdir, 'pycache')}",
            os.path.abspath(__file__), "--child"]
    cells = [(size, variant) for size in sizes for variant in VARIANTS]
    rng = random.Random(20240501)
    results: dict[int, list[list[int]]] = {size: [] for size in sizes}
    for index in range(args.warmup + args.runs):
        rng.shuffle(cells)
        timings = {}
        for size, variant in cells:
            os.pwrite(stamp_fd, bytes(8), 0)
            argv = [*base, variant, stamp_file, static, foreign]
            pid = os.posix_spawn(sys.executable, argv, environments[size], file_actions=actions)
            _, status = os.waitpid(pid, 0)
            if status != 0:
                sys.exit(f"exec_core.py: {variant} with {size} variables failed (wait status {status})")
            try:
                line = os.read(read_end, 64)
            except BlockingIOError:
                line = b""
            started = int.from_bytes(os.pread(stamp_fd, 8, 0), sys.byteorder, signed=True)
            if not started:
                sys.exit(f"exec_core.py: {variant} with {size} variables stored no start time")
            if not (line.endswith(b"\n") and line[:-1].isdigit() and int(line) > started):
                sys.exit(f"exec_core.py: {variant} with {size} variables: stamp did not print a clock reading"
                         f" after the start ({line[:64]!r}): the exec did not start it")
            timings[size, variant] = int(line) - started
        if index >= args.warmup:
            for size in sizes:
                results[size].append([timings[size, variant] for variant in VARIANTS])
    for fd in (stamp_fd, read_end, write_end):
        os.close(fd)
    return results


def report(size: int, rounds: list[list[int]]) -> tuple[str, Ratio]:
    """Print one size's table and verdict; returns the verdict in a few words, and the ratio of
    the C core to the os fallback."""
    import statistics

    env_bytes = size * (len("NIXLD_BENCH_00000=") + len(VALUE) + 1)
    print(f"{size} variables (~{env_bytes / 1024:.0f} KiB of environment), {len(rounds)} rounds")
    print(f"    {'variant':14}{'median':>9}{'p25':>9}{'p75':>9}   (µs from the exec call to main())")
    notes = ("", "", "   reference: leaves SIGPIPE ignored", "   informational: planning, loader, libc start-up",
             "   informational: loader, libc start-up")
    medians = []
    spreads = []
    for which, name in enumerate(VARIANTS):
        column = [r[which] / 1000 for r in rounds]
        low, high = quantile(column, 0.25), quantile(column, 0.75)
        medians.append(statistics.median(column))
        spreads.append(high - low)
        print(f"    {name:14}{medians[-1]:9.1f}{low:9.1f}{high:9.1f}{notes[which]}")
    ratio = medians[0] / medians[1]
    low, high = bootstrap_ratio(rounds, 0, (1,))
    difference = medians[0] - medians[1]
    if high < 1:
        verdict = f"FASTER than the os fallback by {-difference:.0f} µs ({(1 - ratio) * 100:.1f}%)"
        why = "entirely below 1"
    elif low > 1:
        verdict = f"SLOWER than the os fallback by {difference:.0f} µs ({(ratio - 1) * 100:.1f}%)"
        why = "entirely above 1"
    else:
        verdict = f"EQUAL to the os fallback within noise ({difference:+.0f} µs)"
        why = "contains 1"
    print(f"    verdict: the C core is {verdict}: ratio {ratio:.3f}, 95% interval"
          f" [{low:.3f}, {high:.3f}] ({why}); IQRs {spreads[0]:.0f} and {spreads[1]:.0f} µs")
    blocks, os_dict = preparation_us(size)
    print(f"    Python-side preparation alone, in-process: the C core's two blocks {blocks:.1f} µs,"
          f" the os fallback's dict {os_dict:.1f} µs (plus its own conversion inside the call)")
    print(f"    planning and exec_plan's own work (exec_foreign - planned): {medians[3] - medians[4]:.0f} µs")
    print()
    return (verdict.replace(" than the os fallback", "").replace(" to the os fallback", ""),
            Ratio(f"C core/os fallback at {size} variables", ratio, low, high, BAR))


def import_cost_us(workdir: str, repeats: int = 21) -> float:
    """Median µs of importing the C core (nixld._exec and _cffi_backend), from -X importtime
    in fresh interpreters (which inflates it somewhat)."""
    import statistics
    import subprocess

    costs = []
    for _ in range(repeats):
        result = subprocess.run(
            [sys.executable, "-X", f"pycache_prefix={os.path.join(workdir, 'pycache')}", "-X", "importtime",
             "-c", "import nixld, nixld._exec"], capture_output=True, text=True, check=True)
        for line in result.stderr.splitlines():
            fields = line.split("|")
            if len(fields) == 3 and fields[2].strip() == "nixld._exec":
                costs.append(int(fields[1]))
    if not costs:
        sys.exit("exec_core.py: nixld._exec was not imported")
    return statistics.median(costs[1:] or costs)  # the first run may fill the bytecode cache


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="measured rounds (default 200)")
    parser.add_argument("--warmup", type=int, default=5, help="discarded rounds (default 5)")
    parser.add_argument("--sizes", default="50,500,5000",
                        help="environment sizes, comma-separated (default 50,500,5000)")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2")
    sizes = [int(size) for size in args.sizes.split(",")]

    installed_nixld()
    loader = find_loader()
    with scratch_directory() as workdir:
        os.mkdir(os.path.join(workdir, "lib"))
        static, foreign = compile_stamps(workdir)
        print(f"nixld exec core: {sys.executable} (Python {sys.version.split()[0]}), loader {loader},"
              f" {os.cpu_count()} CPUs")
        print(f"{args.runs} interleaved rounds (+{args.warmup} discarded), each size and variant once"
              f" a round in a shuffled order; each measurement is a fresh interpreter:"
              f" monotonic_ns(), exec call, then stamp's main() reads the same clock")
        print()
        results = measure(sizes, args, workdir, static, foreign, loader)
        reports = {size: report(size, results[size]) for size in sizes}
        print("C core against the os fallback: " + "; ".join(f"{size} variables: {words}"
                                                             for size, (words, _) in reports.items()))
        print(f"for scale: importing the C core (nixld._exec with _cffi_backend) costs"
              f" {import_cost_us(workdir):.0f} µs, inside the C core's numbers; the fallback's"
              " `import signal` is inside its own")
    return verdict([ratio for _, ratio in reports.values()])

if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:6])
    else:
        sys.dont_write_bytecode = True  # a benchmark leaves no files behind
        sys.exit(main())
