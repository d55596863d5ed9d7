"""`nixld inspect` on every ELF program in /usr/bin, side by side with lddtree and libtree.

The bar (from the issue): inspecting every ELF file in /usr/bin in one process is at least 5x
faster with nixld than with lddtree (Debian's pax-utils, Python on pyelftools) on the same
files. libtree (C) is measured too, to say how far from a native resolver nixld is.

The files: every regular file in the directory (not a symlink) that starts with the ELF
magic, in name order; every tool gets the same list, all of it in one command line. Each
command below is the wall time of a whole process, from posix_spawn to waitpid, output to
/dev/null:

  nixld          nixld inspect --json FILE...   the console script of --python's venv; the bar
  nixld-tree     nixld inspect --tree FILE...   context: the output form closest to lddtree's
  lddtree        lddtree FILE...                the baseline of the bar: its default tree
                     output. Every display mode resolves the same: ParseELF walks each file's
                     whole tree before anything is printed; -l and -a change only the printing.
                     Run with the interpreter its `#!/usr/bin/env python3` finds, or with
                     /usr/bin/python3 when that one cannot import elftools (said so).
  lddtree*       lddtree FILE... run by nixld's interpreter (its pyelftools)
  nixld*         python -m nixld inspect --json FILE..., run by lddtree's interpreter (its
                     pyelftools; PYTHONPATH names a directory holding only the nixld package)
                     Context, both: so that a slower Python build or another pyelftools release
                     is not mistaken for nixld's doing or undoing. Only when the two are different
                     interpreters, compared by what each reports of itself (the binary it runs and
                     the directories it imports from), not by path: a venv's python and python3
                     are one interpreter, a venv and its base Python are two.
  libtree        libtree -vv FILE...            one process for all files. -vv resolves every
                     library, the default-hidden ones (libc, libm...) included, and descends
                     into each library once per process: less work than nixld, which walks
                     every program's whole tree (from parses it has already made)
  libtree-vvv    libtree -vvv: context; it descends again at every occurrence, more work than nixld
  python         python -c pass, nixld's interpreter: its start-up alone

and, in a fresh interpreter of the same venv (`python -c`, the start of any console script),
nixld in-process: the interpreter's start-up, the import of nixld.resolve and of pyelftools
(which nixld imports lazily), Inspector().inspect over all files (one ld.so --help query
included), as_json and json.dumps of the results, then the end of the process, each timed
apart, so that start-up and output can be told from the resolution itself. All are readings of
one clock (CLOCK_MONOTONIC) taken one after the other, from just before posix_spawn (by this
script), through the child's statements, to just after waitpid (by this script): every phase is
a difference of consecutive readings of one process, so none can be negative, and they add up
to that process's wall time. (The start-up is not had as the console script's time less the
in-process phases: those are two processes, and the difference of their medians is noise that
can fall below zero.)

Before any timing, each command runs once and must show that it did its work, or it is not
timed: its exit status is one a complete run gives (nixld 0, or 1 when a library is missing;
lddtree 0, as its 1 also means a crash, a file it could not read or parse, a glob that matched
nothing; libtree 0, or 28 when a library is missing; python 0), and its output resolves
libc.so.6 for each file of a sample: up to 20 files, spread over the list, whose DT_NEEDED names
libc.so.6 (read with pyelftools, not with nixld). A baseline that fails is left out of the table
with one line saying why; nixld failing ends the benchmark.

The runs are interleaved: each round runs every command once, in a shuffled order, so drift
on a noisy machine falls on all alike; --warmup rounds are discarded. The children get
NIX_LD (the host's loader), no LD_LIBRARY_PATH, no NIX_LD_LIBRARY_PATH (so nixld also tries
nix-ld's default directory, as it does for a user), and PYTHONPYCACHEPREFIX in a temporary
directory: every module comes from cached bytecode after the warm-up, nothing is written next
to the sources.

Reading the output: medians in seconds, with the fastest and slowest round. The ratios are
of medians, with a 95% bootstrap interval (rounds resampled); "per round" gives the range of
the same ratio within each round. Then a coarse
split of nixld's in-process time, measured by wrapping nixld's functions with timers
(exclusive: a wrapped call inside another counts only once), and cProfile's top 15 by
cumulative time (cProfile inflates pure-Python code such as pyelftools' parser more than
system calls; the split is the one to quote). Last, a sanity check on every file: the set of
libraries nixld and lddtree resolve (real paths, the loader included) and the names each
does not find; disagreements are listed, not failed on.

The last line is the verdict. Exit status: 0 when the bar is met, 1 when not, 2 when it
cannot be judged (no lddtree that did its work). Children run in a scratch directory, so the
benchmark can be started from anywhere.

    python benchmarks/inspect.py [--runs N] [--warmup N] [--dir DIR] [--python PYTHON]

--python defaults to the interpreter running this script; prefer a venv where nixld is a
regular (not editable) install.
"""

from __future__ import annotations

import os
import sys

# This file is named like the stdlib's inspect, which dataclasses and pstats import: run as a
# script, its directory is sys.path[0] and would shadow it, here and in the children. Searched
# last, it still provides measurements.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.append(sys.path.pop(0))

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

from measurements import Ratio, bootstrap_ratio, scratch_directory, spawn_time_ns, verdict  # noqa: E402

BAR = 5.0
SAMPLE = 20  # files whose trees must show libc.so.6 found, for a command to count as done
INSTALL = {"lddtree": "apt-get install pax-utils", "libtree": "apt-get install libtree"}
SANITY_SHOWN = 10


# --- children: run in --python's interpreter, report JSON on stdout -------------------------

def child_info() -> None:
    """What is measured: nixld, pyelftools and the host's loader, from the child's side."""
    import elftools

    import nixld
    from nixld import elf

    loader = elf.read_header(os.fsencode(os.path.realpath(sys.executable))).interpreter
    json.dump({
        "python": sys.version.split()[0],
        "nixld_file": nixld.__file__,
        "nixld_version": nixld.__version__,
        "elftools_version": elftools.__version__,
        "elftools_file": elftools.__file__,
        "loader": None if loader is None else os.fsdecode(loader),
    }, sys.stdout)


# nixld in-process, in a fresh `python -c`: a clock reading at its first statement and after
# each phase, written to stdout at the end.
INPROCESS = """
import time
clock = time.monotonic_ns
readings = [clock()]
import os, sys
from nixld.resolve import Inspector
readings.append(clock())
import elftools.elf.structs  # nixld imports it at the first parse
readings.append(clock())
inspector = Inspector()
inspections = [inspector.inspect(os.fsencode(path)) for path in sys.argv[1:]]
readings.append(clock())
import json  # as the CLI does, for --json only
text = json.dumps([inspection.as_json() for inspection in inspections], indent=2)
readings.append(clock())
sys.stdout.write(json.dumps({"readings": readings, "output_bytes": len(text)}))
"""
PHASES = ["interpreter start-up, site", "import nixld.resolve", "import pyelftools", "inspect",
          "as_json + json.dumps", "writing the readings, exit"]


def inprocess_round(python: str, files: list[str], env: dict[str, str], output: str) -> dict[str, float]:
    """One fresh interpreter doing nixld's work in-process: {phase: seconds}, and "total"."""
    actions = [(os.POSIX_SPAWN_OPEN, 1, output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)]
    argv = [python, "-c", INPROCESS, *files]
    spawned = time.monotonic_ns()
    pid = os.posix_spawn(python, argv, env, file_actions=actions)
    _, status = os.waitpid(pid, 0)
    ended = time.monotonic_ns()
    if status != 0:
        sys.exit(f"inspect.py: nixld in-process failed (wait status {status})")
    with open(output) as stream:
        readings = [spawned, *json.load(stream)["readings"], ended]
    phases = {phase: (after - before) / 1e9 for phase, before, after in zip(PHASES, readings, readings[1:])}
    return {**phases, "total": (ended - spawned) / 1e9}


def child_profile(files: list[str]) -> None:
    """The coarse split (timers wrapped around nixld's functions), then cProfile's top 15."""
    import cProfile
    import io
    import pstats

    import elftools.elf.structs  # noqa: F401  imported before the clock, as in child_inprocess

    from nixld import glibc, loader, objects, resolve

    totals: dict[str, list[int]] = {}
    stack: list[int] = []

    def timed(name, function):
        totals[name] = [0, 0]

        def wrapper(*args, **kwargs):
            start = time.perf_counter_ns()
            stack.append(0)
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter_ns() - start
                inner = stack.pop()
                totals[name][0] += elapsed - inner
                totals[name][1] += 1
                if stack:
                    stack[-1] += elapsed
        return wrapper

    # resolve calls these through module and class attributes, so replacing those is enough.
    wrapped = [
        (objects, "_parse", "pyelftools parsing (objects._parse)"),
        (objects.ObjectCache, "abi_of", "header checks (ObjectCache.abi_of)"),
        (resolve._Walk, "_search", "search, less its header checks (_Walk._search)"),
        (resolve, "_ask_loader", "loader --help query (_ask_loader)"),
        (glibc.LdCache, "read", "ld.so.cache read (LdCache.read)"),
        (loader, "check_loader", "loader check, reads ld.so (check_loader)"),
        (resolve, "mentions", "/proc/self/exe scan (mentions)"),
    ]
    originals = [(owner, attribute, owner.__dict__[attribute]) for owner, attribute, _ in wrapped]
    for owner, attribute, name in wrapped:
        function = getattr(owner, attribute)
        replacement = timed(name, function)
        if isinstance(owner.__dict__[attribute], classmethod):
            replacement = staticmethod(replacement)  # wraps the method already bound to the class
        setattr(owner, attribute, replacement)

    start = time.perf_counter_ns()
    inspector = resolve.Inspector()
    libraries = sum(len(inspector.inspect(os.fsencode(path)).libraries) for path in files)
    total = time.perf_counter_ns() - start
    for owner, attribute, original in originals:
        setattr(owner, attribute, original)

    profiler = cProfile.Profile()
    inspector = resolve.Inspector()
    profiler.enable()
    for path in files:
        inspector.inspect(os.fsencode(path))
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.strip_dirs().sort_stats("cumulative").print_stats(15)
    json.dump({"total": total, "split": totals, "libraries": libraries,
               "profile": text.getvalue()}, sys.stdout)


def child_sample(files: list[str]) -> None:
    """Up to SAMPLE files, spread over the list, whose DT_NEEDED names libc.so.6: read with
    pyelftools, not with nixld, since the sample checks nixld's output too."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    sample = []
    for path in files[::max(1, len(files) // SAMPLE)]:
        try:
            with open(path, "rb") as stream:
                needed = [tag.needed for segment in ELFFile(stream).iter_segments()
                          if segment["p_type"] == "PT_DYNAMIC" for tag in segment.iter_tags("DT_NEEDED")]
        except (OSError, ELFError):
            continue  # a file no tool can read says nothing about the tools
        if "libc.so.6" in needed:
            sample.append(path)
            if len(sample) == SAMPLE:
                break
    json.dump(sample, sys.stdout)


# --- the runner ------------------------------------------------------------------------------

def elf_files(directory: str) -> list[str]:
    """Regular files (not symlinks) starting with the ELF magic, in name order."""
    found = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if "\n" in name or os.path.islink(path) or not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as stream:
                if stream.read(4) == b"\x7fELF":
                    found.append(path)
        except OSError:
            continue  # unreadable: no tool could inspect it either
    return found


def run_child(python: str, mode: str, files: list[str], env: dict[str, str]) -> dict:
    result = subprocess.run([python, os.path.abspath(__file__), "--child", mode, *files], env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"inspect.py: the {mode} child ({python}) failed:\n{result.stderr}")
    return json.loads(result.stdout)


# What an interpreter is, as it reports it: two paths (python and python3 of one venv) may run the
# same one, and one binary (a venv's and its base's) may import different packages.
IDENTITY = ("import json, os, sys; print(json.dumps([os.path.realpath(sys.executable), sys.version,"
            " [os.path.realpath(entry) for entry in sys.path]]))")


def same_interpreter(one: str, other: str, env: dict[str, str]) -> bool:
    """Whether two interpreter paths run the same binary, the same version, with the same
    import path, in this environment."""
    reports = [subprocess.run([python, "-c", IDENTITY], env=env, capture_output=True, text=True,
                              check=True).stdout for python in (one, other)]
    return json.loads(reports[0]) == json.loads(reports[1])


def lddtree_interpreter(lddtree: str, env: dict[str, str]) -> tuple[list[str], str]:
    """The argv prefix that runs lddtree, and a note on the interpreter chosen."""
    with open(lddtree, "rb") as stream:
        first = stream.readline()
    words = first[2:].split() if first.startswith(b"#!") else []
    if not words:
        return [lddtree], "not a script: run as it is"
    if os.path.basename(words[0]) == b"env" and len(words) > 1:
        wanted = shutil.which(os.fsdecode(words[1]), path=env.get("PATH"))
    else:
        wanted = os.fsdecode(words[0])
    if wanted is None or "python" not in os.path.basename(wanted):
        return [lddtree], f"shebang {first.decode(errors='replace').strip()}: run as it is"
    for python in dict.fromkeys([wanted, "/usr/bin/python3"]):
        probe = subprocess.run([python, "-c", "import elftools, sys; print(elftools.__version__); "
                                "print(elftools.__file__); print(sys.version.split()[0])"],
                               env=env, capture_output=True, text=True)
        if probe.returncode == 0:
            version, where, python_version = probe.stdout.splitlines()
            debian = where.startswith("/usr/lib/python3/dist-packages/")
            note = (f"{python} (Python {python_version}), pyelftools {version} from {os.path.dirname(where)}"
                    + (" (Debian's python3-pyelftools)" if debian else ""))
            if python != wanted:
                note += (f"; its shebang finds {wanted} on PATH, which cannot import elftools, so"
                         f" {python} runs it, as on a stock Debian PATH")
            return [python, lddtree], note
    return [], (f"no interpreter that imports elftools ({wanted}, /usr/bin/python3): not measured;"
                " apt-get install python3-pyelftools")


def child_environment(loader: str, pycache: str) -> dict[str, str]:
    """The caller's environment with nixld's settings pinned, the same for every command."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("NIX_LD") and name not in ("LD_LIBRARY_PATH", "LD_PRELOAD")}
    env["NIX_LD"] = loader
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def libc_found(form: str, text: str) -> set[str]:
    """The files whose tree in `text` shows libc.so.6 found. `form`: "json" (nixld --json),
    "tree" (lddtree's and nixld --tree's `NAME => PATH`) or "libtree" (`NAME [WHY]`)."""
    if form == "json":
        try:
            documents = json.loads(text)
        except ValueError:
            return set()
        documents = [documents] if isinstance(documents, dict) else documents  # one file: no list
        return {document["path"] for document in documents
                if any(lib["soname"] == "libc.so.6" and lib["path"] for lib in document.get("libraries", ()))}
    found: set[str] = set()
    path = None
    for line in text.splitlines():
        if line and not line[0].isspace() and line[0] not in "│├└":  # a program's first line
            head, separator, _ = line.rpartition(" (interpreter => ")
            path = head if separator else line.rstrip()
        elif path is not None:
            entry = line.lstrip(" │├└─")
            if entry.startswith("libc.so.6 => /" if form == "tree" else "libc.so.6 ["):
                found.add(path)
    return found


def why_it_did_not_do_its_work(command: Command, result: subprocess.CompletedProcess,
                               sample: list[str]) -> str | None:
    """None when `command` exited as a complete run does and resolved libc.so.6 for every file
    of the sample; otherwise what went wrong, in a few words."""
    if result.returncode not in command.allowed:
        ended = (f"was killed by signal {-result.returncode}" if result.returncode < 0
                 else f"exited with {result.returncode}")
        last = result.stderr.strip().splitlines()[-1:] or ["nothing on stderr"]
        return f"it {ended}, not {' or '.join(map(str, command.allowed))}: {last[0][:200]}"
    if command.form is not None:
        missed = [path for path in sample if path not in libc_found(command.form, result.stdout)]
        if missed:
            return (f"its output does not show libc.so.6 found for {len(missed)} of the {len(sample)}"
                    f" sampled files that need it (the first: {missed[0]})")
    return None


def parse_lddtree(text: str) -> dict[str, tuple[set[str], set[str]]]:
    """file -> (real paths found, the interpreter included; names not found), from the tree."""
    trees: dict[str, tuple[set[str], set[str]]] = {}
    found: set[str] = set()
    missing: set[str] = set()
    for line in text.splitlines():
        if not line.startswith(" "):
            path, _, interp = line.rpartition(" (interpreter => ")
            found, missing = set(), set()
            trees[path] = (found, missing)
            interp = interp[:-1]
            if interp != "None":
                found.add(os.path.realpath(interp))
        elif " => " in line and "!!! circular loop !!!" not in line:
            name, _, target = line.strip().partition(" => ")
            if target == "None":
                missing.add(name)
            else:
                found.add(os.path.realpath(target))
    return trees


def parse_nixld(text: str) -> dict[str, tuple[set[str], set[str]]]:
    trees = {}
    documents = json.loads(text)
    for document in [documents] if isinstance(documents, dict) else documents:  # one file: no list
        found = {os.path.realpath(lib["path"]) for lib in document.get("libraries", ()) if lib["path"]}
        if document.get("interpreter") and not document.get("static"):
            found.add(os.path.realpath(document["loader"]["path"]))
        trees[document["path"]] = (found, set(document.get("missing", ())))
    return trees


def sanity_check(files, nixld_json: str, lddtree_text: str) -> None:
    ours, theirs = parse_nixld(nixld_json), parse_lddtree(lddtree_text)
    differ = [path for path in files if ours.get(path) != theirs.get(path)]
    print(f"sanity check: nixld and lddtree agree on {len(files) - len(differ)} of {len(files)} files"
          " (real paths of the libraries found, the loader included; names not found)")
    for path in differ[:SANITY_SHOWN]:
        ours_found, ours_missing = ours.get(path, (set(), set()))
        theirs_found, theirs_missing = theirs.get(path, (set(), set()))
        print(f"  {path}:")
        for label, items in (("only nixld finds", ours_found - theirs_found),
                             ("only lddtree finds", theirs_found - ours_found),
                             ("only nixld misses", ours_missing - theirs_missing),
                             ("only lddtree misses", theirs_missing - ours_missing)):
            if items:
                print(f"    {label}: {', '.join(sorted(items))}")
        if path not in ours or path not in theirs:
            print(f"    missing from {'nixld' if path not in ours else 'lddtree'}'s output")
    if len(differ) > SANITY_SHOWN:
        print(f"  ... and {len(differ) - SANITY_SHOWN} more")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="discarded rounds (default 1)")
    parser.add_argument("--dir", default="/usr/bin", help="where the ELF files are (default /usr/bin)")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter of the venv whose nixld is measured (default: this one)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.child:
        {"info": child_info, "profile": child_profile,
         "sample": child_sample}[args.child](
            *([rest] if args.child != "info" else []))
        return 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    python = args.python
    nixld = os.path.join(os.path.dirname(python), "nixld")
    if not os.access(nixld, os.X_OK):
        sys.exit(f"inspect.py: no nixld console script next to {python}: install nixld in this venv")
    files = elf_files(args.dir)
    if not files:
        sys.exit(f"inspect.py: no ELF files in {args.dir}")
    with scratch_directory() as workdir:  # so that no child finds modules in the caller's directory
        env = child_environment("/lib64/ld-linux-x86-64.so.2", os.path.join(workdir, "pycache"))
        info = run_child(python, "info", [], env)
        if info["loader"] is None:
            sys.exit(f"inspect.py: {python} is statically linked; cannot find the host's loader")
        env["NIX_LD"] = info["loader"]
        return benchmark(args, python, nixld, files, env, info, workdir)


class Command:
    """One measured command: `allowed` the exit statuses of a complete run, `env` its own
    environment, `form` how its output shows the libraries found (see libc_found; None: no
    output to check)."""

    def __init__(self, key: str, label: str, argv: list[str], allowed: tuple[int, ...],
                 env: dict[str, str], form: str | None) -> None:
        self.key, self.label, self.argv, self.allowed, self.env = key, label, argv, allowed, env
        self.form = form
        self.expected = None  # what it prints is checked once, before the timing (libc_found)


def nixld_only_path(workdir: str, info: dict) -> str:
    """A directory holding only the nixld package, for another interpreter's PYTHONPATH: that
    interpreter then runs this very nixld with its own pyelftools."""
    directory = os.path.join(workdir, "nixld-only")
    os.mkdir(directory)
    os.symlink(os.path.dirname(info["nixld_file"]), os.path.join(directory, "nixld"))
    return directory


def commands(python, nixld, files, env, info, workdir) -> tuple[list[Command], list[str]]:
    """The measured commands for the tools found, and notes on what was chosen or is missing."""
    notes = []
    table = [
        Command("nixld", "nixld inspect --json FILE...", [nixld, "inspect", "--json", *files], (0, 1), env,
                "json"),
        Command("nixld-tree", "nixld inspect --tree FILE...", [nixld, "inspect", "--tree", *files], (0, 1),
                env, "tree"),
    ]
    lddtree = shutil.which("lddtree", path=env.get("PATH"))
    if lddtree is None:
        notes.append(f"lddtree: not found; install it with `{INSTALL['lddtree']}` (Debian, Ubuntu)")
    else:
        prefix, note = lddtree_interpreter(lddtree, env)
        notes.append(f"lddtree: {lddtree}, {note}")
        if prefix:
            table.append(Command("lddtree", "lddtree FILE...", [*prefix, *files], (0,), env, "tree"))
        if len(prefix) == 2 and same_interpreter(prefix[0], python, env):
            notes.append(f"lddtree*, nixld*: not measured, lddtree already runs on nixld's interpreter"
                         f" ({prefix[0]} and {python} are one)")
        elif len(prefix) == 2:  # a Python lddtree, another interpreter
            table.append(Command("lddtree*", "lddtree FILE..., nixld's Python & pyelftools",
                                 [python, lddtree, *files], (0,), env, "tree"))
            other = {**env, "PYTHONPATH": nixld_only_path(workdir, info)}
            table.append(Command("nixld*", "nixld --json FILE..., lddtree's Python & pyelftools",
                                 [prefix[0], "-m", "nixld", "inspect", "--json", *files], (0, 1), other,
                                 "json"))
    libtree = shutil.which("libtree", path=env.get("PATH"))
    if libtree is None:
        notes.append(f"libtree: not found; install it with `{INSTALL['libtree']}` (Debian, Ubuntu)")
    else:
        version = subprocess.run([libtree, "--version"], capture_output=True, text=True).stdout.strip()
        notes.append(f"libtree: {libtree} {version}")
        # 28 is libtree's ERR_DEPENDENCY_NOT_FOUND, given after every file has been shown.
        table.append(Command("libtree", "libtree -vv FILE...", [libtree, "-vv", *files], (0, 28), env,
                             "libtree"))
        table.append(Command("libtree-vvv", "libtree -vvv FILE...", [libtree, "-vvv", *files], (0, 28), env,
                             "libtree"))
    table.append(Command("python", "python -c pass, nixld's Python", [python, "-c", "pass"], (0,), env,
                         None))
    return table, notes


def benchmark(args, python, nixld, files, env, info, workdir) -> int:
    argv_bytes = sum(len(os.fsencode(path)) + 1 for path in files)
    print(f"nixld inspect: {len(files)} ELF files in {args.dir} (regular files, no symlinks), all in one"
          f" command line per tool ({argv_bytes / 1024:.1f} KiB of arguments; ARG_MAX"
          f" {os.sysconf('SC_ARG_MAX') // 1024} KiB)")
    print(f"nixld {info['nixld_version']} from {os.path.dirname(info['nixld_file'])}; Python {info['python']}"
          f" ({python}), pyelftools {info['elftools_version']}; NIX_LD={env['NIX_LD']};"
          f" {os.cpu_count()} CPUs")
    table, notes = commands(python, nixld, files, env, info, workdir)
    print("\n".join(notes))

    # One untimed run of each, output kept: timing a command that did not do its work (a crash,
    # an interpreter without pyelftools) would measure nothing and call it fast.
    sample = run_child(python, "sample", files, env)
    if not sample:
        sys.exit(f"inspect.py: no file among the {len(files)} names libc.so.6 in its DT_NEEDED: nothing"
                 " to check that the tools did their work with")
    print(f"work check: exit status, and libc.so.6 found for {len(sample)} sampled files that need it")
    outputs = {}
    for command in table[:]:
        result = subprocess.run(command.argv, env=command.env, capture_output=True, text=True)
        why = why_it_did_not_do_its_work(command, result, sample)
        if why is None:
            outputs[command.key] = result.stdout
        elif command.key in ("nixld", "nixld-tree", "python"):
            sys.exit(f"inspect.py: {command.label}: {why}\n{result.stderr[-2000:]}")
        else:  # a baseline or context: say so, and leave it out of the timing
            print(f"{command.key}: left out, not timed: {why}")
            table.remove(command)

    print(f"{args.runs} interleaved rounds (+{args.warmup} discarded), each command once per round in a"
          " shuffled order; wall time posix_spawn -> waitpid, output to /dev/null")
    print()
    rng = random.Random(20240501)
    rounds: list[dict[str, float]] = []
    inprocess: list[dict] = []
    for index in range(args.warmup + args.runs):
        order = table + [None]  # None: the in-process child
        rng.shuffle(order)
        timings = {}
        for command in order:
            if command is None:
                result = inprocess_round(python, files, env, os.path.join(workdir, "readings"))
            else:
                timings[command.key] = spawn_time_ns(command) / 1e9
        if index >= args.warmup:
            rounds.append(timings)
            inprocess.append(result)

    medians = {command.key: statistics.median(r[command.key] for r in rounds) for command in table}
    print(f"{'':13}{'whole process':52}{'median':>8}{'min':>8}{'max':>8}   (s)")
    for command in table:
        column = [r[command.key] for r in rounds]
        print(f"{command.key:13}{command.label:52}{medians[command.key]:8.3f}{min(column):8.3f}"
              f"{max(column):8.3f}")
    print()
    print(f"{'':13}{'nixld in-process, a fresh python -c':52}{'median':>8}{'min':>8}{'max':>8}   (s)")
    for phase in [*PHASES, "total"]:
        column = [r[phase] for r in inprocess]
        label = {"inspect": f"Inspector().inspect x {len(files)}",
                 "total": "the whole process, posix_spawn -> waitpid"}.get(phase, phase)
        print(f"{'':13}{label:52}{statistics.median(column):8.3f}{min(column):8.3f}{max(column):8.3f}")
    print(f"{'':13}(the same work through the console script, nixld inspect --json above:"
          f" {medians['nixld']:.3f} s, median)")
    print()

    bar = None
    if "lddtree" in medians:
        low, high = bootstrap_ratio(rounds, "lddtree", ("nixld",), rng)
        bar = Ratio("lddtree/nixld --json", medians["lddtree"] / medians["nixld"], low, high, BAR, at_most=False)
        per_round = [r["lddtree"] / r["nixld"] for r in rounds]
        print(f"lddtree / nixld --json     {bar.ratio:6.2f}x   [{low:.2f}, {high:.2f}]   per round"
              f" {min(per_round):.2f}x..{max(per_round):.2f}x   bar {BAR:g}x: {'PASS' if bar.ratio >= BAR else 'FAIL'}")
        print(f"lddtree / nixld --tree     {medians['lddtree'] / medians['nixld-tree']:6.2f}x")
        if "lddtree*" in medians:
            print(f"lddtree* / nixld --json    {medians['lddtree*'] / medians['nixld']:6.2f}x   both on"
                  f" nixld's Python {info['python']} and pyelftools {info['elftools_version']}")
        if "nixld*" in medians:
            print(f"lddtree / nixld*           {medians['lddtree'] / medians['nixld*']:6.2f}x   both on"
                  " lddtree's Python and pyelftools")
    else:
        print("lddtree / nixld: not measured (no lddtree that did its work); the bar cannot be judged")
    if "libtree" in medians:
        vvv = (f"; / libtree -vvv: {medians['nixld'] / medians['libtree-vvv']:.1f}x"
               if "libtree-vvv" in medians else "")
        print(f"nixld --json / libtree -vv {medians['nixld'] / medians['libtree']:6.1f}x   (slower{vvv})")
    elif "libtree-vvv" in medians:
        print(f"nixld --json / libtree -vvv {medians['nixld'] / medians['libtree-vvv']:5.1f}x   (slower)")
    print()

    profile = run_child(python, "profile", files, env)
    total = profile["total"]
    print(f"where nixld's in-process time goes: {total / 1e9:.3f} s for {len(files)} files and"
          f" {profile['libraries']} listed libraries (a fresh Inspector; timers around nixld's"
          " functions, exclusive)")
    rows = sorted(((value[0], name, value[1]) for name, value in profile["split"].items()), reverse=True)
    rows.append((total - sum(value[0] for value in profile["split"].values()),
                 "everything else (the walk, opens, stats, dataclasses)", None))
    for spent, name, calls in rows:
        count = "" if calls is None else f"{calls:7d} calls {spent / calls / 1e3:8.1f} µs each"
        print(f"  {spent / 1e9:7.3f} s {100 * spent / total:5.1f}%  {name:50}{count}")
    top_spent, top_name, _ = rows[0]
    print(f"dominant: {top_name}, {100 * top_spent / total:.0f}% of the in-process time")
    print()
    print("cProfile, top 15 by cumulative time (another fresh Inspector, no timers; cProfile inflates"
          " pure-Python code):")
    print("\n".join(line for line in profile["profile"].splitlines() if line.strip()))
    print()

    if "lddtree" in outputs:
        headers = sum(1 for line in outputs["lddtree"].splitlines() if line and not line.startswith(" "))
        if headers != len(files):
            print(f"note: lddtree printed {headers} trees for {len(files)} files (it expands glob"
                  " characters in its arguments)")
        sanity_check(files, outputs["nixld"], outputs["lddtree"])
    else:
        print("sanity check: skipped, lddtree was not measured")
    if bar is None:
        print(f"VERDICT inspect.py: not judged: no lddtree that did its work (bar: lddtree/nixld --json >= {BAR:g})")
        return 2
    return verdict([bar])


if __name__ == "__main__":
    sys.dont_write_bytecode = True  # a benchmark leaves no files behind
    sys.exit(main())
