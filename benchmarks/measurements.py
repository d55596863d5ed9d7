"""What the benchmarks share: the foreign interpreter, the host's loader, and the statistics."""

from __future__ import annotations

import os
import random
import statistics
import sys

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
