"""`nixld find-libs`: its index of a Nix-store-like tree of 200,000 files, without and with the cache.

The bar (issue 12): with the index cached and nothing changed ("warm"), indexing is at least 20x
faster than with no cache ("cold"), on a tree of at least 200,000 distinct files (each its own
inode: no hard links) laid out like a Nix store.

The tree, made by this script with a fixed seed: HASH-name-version directories (a Nix base-32
hash), each a package of one kind: C libraries (lib/ with libNAME.so.X.Y.Z and the libNAME.so.X
and libNAME.so symlinks to it, sometimes a lib/NAME/plugins/ directory of modules, a -dev
output with include/, lib/pkgconfig/, static archives and the odd linker script named like a
library, share/doc/), programs (bin/, share/man/, share/locale/, data), Python packages
(lib/python3.11/site-packages/ with modules, __pycache__/, dist-info/ and some C extensions)
and icon themes; one glibc with its 250 gconv modules, and a 32-bit glibc. Shared objects are
ELF headers of x86_64 (or i386) ET_DYN files, 1 to 8 KiB; every mtime is 1 s, as Nix leaves a
finished store path. It takes a minute and about 1 GB, so it is kept between runs in --tree
(default $XDG_CACHE_HOME/nixld-benchmarks/find-libs-tree) with a manifest, remade when the
manifest does not match, and removed by --remove-tree.

What is measured: nixld.findlibs.load_index as find-libs calls it, then the look-up of a few
library names (those a program would miss) in the index, timed in a fresh interpreter from
the call to the last answer (find-libs is one process per run; the interpreter's start and
nixld's import are left out, being the same for both sides). Two ways find-libs indexes a root:

  store  the tree as find-libs indexes /nix/store: each package's lib/ and lib64/, and a
         package Nix has finished is read once. The bar is on this one.
  walk   the tree as a --search ROOT: walked whole, every directory checked at a warm run
         (one stat each, which bounds how much faster warm can be); for information.

and two states of nixld's cache:

  cold   no cache file (a new, empty cache directory each run): every directory listed, every
         *.so* file's header read, the cache written. The operating system's caches (pages,
         inodes, directory entries) are warm: the tree was read just before, by the previous
         runs (the first round is a discarded warm-up, shown on its own line as "first cold"),
         so cold is nixld's own work, not the disk's. The first find-libs after a reboot also
         waits for the disk, and is slower than this.
  warm   the cache a cold run of the same kind wrote, nothing changed since.

The cost per file is cold's median over the files of the tree (regular files and symlinks),
and over the files read (*.so* names in the directories indexed).

Each side must show it did its work, or the benchmark stops: cold says "built" and read every
directory and *.so* name of its kind, warm says "cached" and read nothing; both find exactly
the shared objects that an independent walk of the tree (os.walk and a read of each header,
done when the tree is made) finds for that kind, and the same answers for the names looked up.
Rounds are interleaved (the four measurements of a round in a shuffled order), medians with
the 95% bootstrap interval of each ratio; the last line is the verdict. Exit status 0 when the
bar holds, 1 otherwise.

    python benchmarks/find_libs.py [--runs N] [--files N] [--tree DIR] [--remove-tree]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys

from measurements import Ratio, bootstrap_ratio, describe, installed_nixld, scratch_directory, verdict

BAR = 20.0
LAYOUT = 1  # the tree's layout: change it when the builder changes, and old trees are remade
NIX_BASE32 = "0123456789abcdfghijklmnpqrsvwxyz"
NIX_MTIME = 1_000_000_000
SYLLABLES = ("al", "ba", "cor", "da", "el", "fon", "gi", "ha", "ix", "jo", "ka", "lu", "mo", "ne", "or", "pa",
             "qu", "re", "si", "ta", "ub", "vi", "wa", "xe", "yo", "ze", "gtk", "qt", "ssl", "xml")
EM_X86_64, EM_386, ET_DYN = 62, 3, 3
# What a program would be missing: glibc's libraries (in the 64- and the 32-bit glibc), and a
# library no package holds.
NAMES = ["libc.so.6", "libm.so.6", "libpthread.so.0", "libnot-in-the-store.so.1"]
LIBRARY_DIRS = ("lib", "lib64")  # what find-libs reads of a store package

MEASURE = """
import json, os, sys, time
from nixld import findlibs
root, cache, kind, *names = map(os.fsencode, sys.argv[1:])
start = time.perf_counter_ns()
index, how = findlibs.load_index(root, cache, store=kind == b"store")
answers = {name: [candidate.directory for candidate in index.providers(name)] for name in names}
elapsed = time.perf_counter_ns() - start
candidates = sorted((os.fsdecode(name), os.fsdecode(c.directory), c.elf_class, c.machine)
                    for name, c in index.candidates())
print(json.dumps({"ns": elapsed, "how": how, "directories": len(index.directories),
                  "directories_read": index.directories_read, "files_read": index.files_read,
                  "candidates": candidates, "answers": {os.fsdecode(n): list(map(os.fsdecode, d))
                                                        for n, d in answers.items()}}))
"""


def elf_header(elf_class: int, machine: int) -> bytes:
    ident = b"\x7fELF" + bytes([2 if elf_class == 64 else 1, 1, 1, 0]) + bytes(8)
    if elf_class == 64:
        return ident + struct.pack("<HHIQQQIHHHHHH", ET_DYN, machine, 1, 0x1000, 64, 0, 0, 64, 56, 0, 64, 0, 0)
    return ident + struct.pack("<HHIIIIIHHHHHH", ET_DYN, machine, 1, 0x1000, 52, 0, 0, 52, 32, 0, 40, 0, 0)


class StoreBuilder:
    """Writes packages into `root` until it holds `files` regular files."""

    def __init__(self, root: str, seed: int = 20261206) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.files = self.symlinks = self.paths = 0

    def build(self, files: int) -> None:
        os.makedirs(self.root)
        self.glibc(64, EM_X86_64, "")
        self.glibc(32, EM_386, "-i686")
        kinds = [self.library] * 30 + [self.program] * 25 + [self.python] * 30 + [self.icons] * 15
        while self.files < files:
            self.rng.choice(kinds)()

    def store_path(self, name: str) -> str:
        self.paths += 1
        digest = hashlib.sha256(str(self.paths).encode()).digest()
        return os.path.join(self.root, "".join(NIX_BASE32[byte % 32] for byte in digest) + "-" + name)

    def write(self, path: str, data: bytes) -> None:
        with open(path, "xb") as stream:  # x: a name given twice would be one file counted twice
            stream.write(data)
        self.files += 1

    def shared_object(self, directory: str, name: str, elf_class: int = 64, machine: int = EM_X86_64) -> None:
        self.write(os.path.join(directory, name),
                   elf_header(elf_class, machine).ljust(self.rng.choice((1024, 2048, 4096, 8192)), b"\0"))

    def symlink(self, target: str, path: str) -> None:
        os.symlink(target, path)
        self.symlinks += 1

    def names(self, count: int) -> list[str]:
        """`count` different made-up names."""
        found: list[str] = []
        while len(found) < count:
            name = "".join(self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(1, 3)))
            if name not in found:
                found.append(name)
        return found

    def version(self) -> str:
        return ".".join(str(self.rng.randint(0, 30)) for _ in range(self.rng.randint(2, 3)))

    def library(self) -> None:
        rng = self.rng
        name, version = self.names(1)[0], self.version()
        out = self.store_path(f"lib{name}-{version}")
        lib = os.path.join(out, "lib")
        os.makedirs(lib)
        for index, extra in enumerate(self.names(rng.choice((1, 1, 1, 2, 2, 3, 4, 6)))):
            base = name if index == 0 else name + extra
            major = rng.randint(0, 9)
            real = f"lib{base}.so.{major}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
            self.shared_object(lib, real)
            self.symlink(real, os.path.join(lib, f"lib{base}.so.{major}"))
            self.symlink(f"lib{base}.so.{major}", os.path.join(lib, f"lib{base}.so"))
        if rng.random() < 0.2:
            plugins = os.path.join(lib, name, "plugins")
            os.makedirs(plugins)
            for plugin in self.names(rng.randint(2, 30)):
                self.shared_object(plugins, f"lib{plugin}.so")
        doc = os.path.join(out, "share", "doc", f"{name}-{version}")
        os.makedirs(doc)
        for text in ("README", "NEWS", "COPYING", "AUTHORS")[:rng.randint(1, 4)]:
            self.write(os.path.join(doc, text), b"documentation\n" * rng.randint(1, 40))
        dev = self.store_path(f"lib{name}-{version}-dev")
        include = os.path.join(dev, "include", name)
        os.makedirs(include)
        for header in self.names(rng.randint(3, 80)):
            self.write(os.path.join(include, header + ".h"), b"#pragma once\n" * rng.randint(1, 50))
        os.makedirs(os.path.join(dev, "lib", "pkgconfig"))
        self.write(os.path.join(dev, "lib", "pkgconfig", f"{name}.pc"), f"Libs: -l{name}\n".encode())
        if rng.random() < 0.3:
            self.write(os.path.join(dev, "lib", f"lib{name}.a"), b"!<arch>\n" + bytes(2000))
        if rng.random() < 0.05:  # a linker script named like a library, as ncurses ships them
            self.write(os.path.join(dev, "lib", f"lib{name}w.so"), f"INPUT(-l{name})\n".encode())
        os.makedirs(os.path.join(dev, "nix-support"))
        self.write(os.path.join(dev, "nix-support", "propagated-build-inputs"), out.encode() + b"\n")

    def program(self) -> None:
        rng = self.rng
        name, version = self.names(1)[0], self.version()
        out = self.store_path(f"{name}-{version}")
        bin_directory, man = os.path.join(out, "bin"), os.path.join(out, "share", "man", "man1")
        os.makedirs(bin_directory)
        os.makedirs(man)
        for tool in self.names(rng.choice((1, 1, 2, 3, 5, 12))):
            self.write(os.path.join(bin_directory, tool), elf_header(64, EM_X86_64).ljust(16384, b"\0"))
            self.write(os.path.join(man, tool + ".1.gz"), bytes(rng.randint(200, 3000)))
        if rng.random() < 0.4:
            data = os.path.join(out, "share", name)
            os.makedirs(data)
            for item in self.names(rng.randint(1, 60)):
                self.write(os.path.join(data, item + rng.choice((".conf", ".json", ".txt", ".xml"))), b"x\n" * 20)
        if rng.random() < 0.3:
            for language in rng.sample(("de", "fr", "es", "it", "ja", "pt_BR", "ru", "zh_CN", "pl", "nl", "sv", "cs",
                                        "da", "fi", "hu", "ko", "tr", "uk"), rng.randint(3, 18)):
                messages = os.path.join(out, "share", "locale", language, "LC_MESSAGES")
                os.makedirs(messages)
                self.write(os.path.join(messages, name + ".mo"), bytes(rng.randint(500, 5000)))

    def python(self) -> None:
        rng = self.rng
        name, version = self.names(1)[0], self.version()
        out = self.store_path(f"python3.11-{name}-{version}")
        site = os.path.join(out, "lib", "python3.11", "site-packages")
        packages = [os.path.join(site, name)]
        for sub in self.names(rng.choice((0, 0, 1, 2, 4, 8))):
            packages.append(os.path.join(rng.choice(packages), "_" + sub))
        for package in packages:
            os.makedirs(os.path.join(package, "__pycache__"))
            for module in self.names(rng.randint(1, 25)):
                self.write(os.path.join(package, module + ".py"), b"import os\n" * rng.randint(5, 200))
                self.write(os.path.join(package, "__pycache__", module + ".cpython-311.pyc"),
                           bytes(rng.randint(300, 6000)))
        if rng.random() < 0.25:
            for extension in self.names(rng.randint(1, 4)):
                self.shared_object(rng.choice(packages), f"_{extension}_c.cpython-311-x86_64-linux-gnu.so")
        info = os.path.join(site, f"{name}-{version}.dist-info")
        os.makedirs(info)
        for text in ("METADATA", "RECORD", "WHEEL", "top_level.txt"):
            self.write(os.path.join(info, text), b"Name: x\n" * 10)

    def icons(self) -> None:
        rng = self.rng
        name, version = self.names(1)[0], self.version()
        out = self.store_path(f"{name}-icons-{version}")
        for size in rng.sample(("16x16", "22x22", "24x24", "32x32", "48x48", "64x64", "128x128", "256x256",
                                "scalable"), rng.randint(1, 9)):
            apps = os.path.join(out, "share", "icons", "hicolor", size, "apps")
            os.makedirs(apps)
            for icon in self.names(rng.randint(1, 40)):
                self.write(os.path.join(apps, icon + ".png"), bytes(rng.randint(200, 4000)))

    def glibc(self, elf_class: int, machine: int, suffix: str) -> None:
        out = self.store_path(f"glibc-2.40-66{suffix}")
        lib = os.path.join(out, "lib")
        gconv = os.path.join(lib, "gconv")
        os.makedirs(gconv)
        for name in ("libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libresolv.so.2",
                     "ld-linux-x86-64.so.2" if elf_class == 64 else "ld-linux.so.2", "libnss_files.so.2",
                     "libnss_dns.so.2", "libutil.so.1"):
            self.shared_object(lib, name, elf_class, machine)
        for number in range(250):
            self.shared_object(gconv, f"IBM{number:04d}.so", elf_class, machine)
        self.write(os.path.join(gconv, "gconv-modules"), b"module x\n" * 100)
        dev = self.store_path(f"glibc-2.40-66{suffix}-dev")
        os.makedirs(os.path.join(dev, "lib"))
        for name in ("libc.so", "libm.so", "libpthread.so"):  # linker scripts, as glibc ships them
            self.write(os.path.join(dev, "lib", name), b"/* GNU ld script */\nGROUP ( libc.so.6 )\n")


def finish_as_nix_does(root: str) -> None:
    """Every mtime in the store paths set to 1 s, as Nix sets it once a path is complete."""
    for directory, _, files in os.walk(root, topdown=False):
        for name in files:
            os.utime(os.path.join(directory, name), ns=(NIX_MTIME, NIX_MTIME), follow_symlinks=False)
        if directory != root:
            os.utime(directory, ns=(NIX_MTIME, NIX_MTIME))


def shared_object_facts(path: str) -> tuple[int, int] | None:
    """(class, machine) of the ELF shared object at `path` (through symlinks), else None."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] != 1:
        return None
    e_type, machine = struct.unpack_from("<HH", head, 16)
    return ((32 if head[4] == 1 else 64), machine) if e_type == ET_DYN else None


def expectation(root: str) -> dict:
    """What find-libs must find in the tree, found independently of nixld (os.walk): per kind of
    index, the directories in it and those it lists (a store's packages are looked at, not
    listed), the *.so* names it reads and a digest of the shared objects found."""
    files = symlinks = 0
    kinds = {kind: {"directories": 0, "directories_read": 0, "files_read": 0, "candidates": []}
             for kind in ("store", "walk")}
    for directory, _, names in os.walk(root):
        relative = [] if directory == root else os.path.relpath(directory, root).split(os.sep)
        library_directory = len(relative) == 2 and relative[1] in LIBRARY_DIRS
        for kind, indexed, listed in (("walk", True, True),
                                      ("store", len(relative) < 2 or library_directory, len(relative) != 1)):
            kinds[kind]["directories"] += indexed
            kinds[kind]["directories_read"] += indexed and listed
        for name in names:
            path = os.path.join(directory, name)
            is_link = os.path.islink(path)
            symlinks += is_link
            files += not is_link
            if name.endswith(".so") or ".so." in name:
                facts = shared_object_facts(path)
                for kind, counted in (("walk", True), ("store", library_directory)):
                    if counted:
                        kinds[kind]["files_read"] += 1
                        if facts:
                            kinds[kind]["candidates"].append([name, directory, *facts])
    for counts in kinds.values():
        counts["candidates"] = digest(counts["candidates"])
    return {"files": files, "symlinks": symlinks, "kinds": kinds}


def digest(candidates: list) -> dict:
    candidates = sorted(map(tuple, candidates))
    return {"count": len(candidates), "sha256": hashlib.sha256(json.dumps(candidates).encode()).hexdigest()}


def default_tree() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "nixld-benchmarks", "find-libs-tree")


def prepared_tree(tree: str, files: int) -> tuple[str, dict]:
    """The store under `tree` and its manifest, made anew unless a complete one of this layout
    and size is there."""
    manifest_path = os.path.join(tree, "manifest.json")
    wanted = {"layout": LAYOUT, "files_wanted": files}
    try:
        with open(manifest_path) as stream:
            manifest = json.load(stream)
        if {key: manifest.get(key) for key in wanted} == wanted:
            print(f"tree: {tree} (made earlier; --remove-tree deletes it)")
            return os.path.join(tree, "store"), manifest
    except (OSError, ValueError):
        pass
    shutil.rmtree(tree, ignore_errors=True)
    os.makedirs(tree)
    free = shutil.disk_usage(tree).free
    if free < files * 10_000:
        sys.exit(f"find_libs.py: {free / 1e9:.1f} GB free under {tree}; the tree needs about"
                 f" {files * 5_000 / 1e9:.1f} GB (--tree DIR elsewhere)")
    print(f"tree: making {files} files in {tree} (once; --remove-tree deletes it) ...", flush=True)
    store = os.path.join(tree, "store")
    builder = StoreBuilder(store)
    builder.build(files)
    finish_as_nix_does(store)
    manifest = {**wanted, "packages": builder.paths, **expectation(store)}
    with open(manifest_path + ".new", "w") as stream:
        json.dump(manifest, stream)
    os.replace(manifest_path + ".new", manifest_path)  # written last: a tree cut short is remade
    return store, manifest


def measure(store: str, cache: str, kind: str, names: list[str]) -> dict:
    result = subprocess.run([sys.executable, "-c", MEASURE, store, cache, kind, *names], capture_output=True,
                            text=True)
    if result.returncode != 0:
        sys.exit(f"find_libs.py: the {kind} measurement failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout)


def check(run: dict, kind: str, state: str, expected: dict, answers: dict) -> None:
    """Exits unless the run did its work: see the module's docstring."""
    counts = expected["kinds"][kind]
    found = digest(run["candidates"])
    want = ("built", counts["directories_read"], counts["files_read"]) if state == "cold" else ("cached", 0, 0)
    problems = []
    if (run["how"], run["directories_read"], run["files_read"]) != want:
        problems.append(f"it says {run['how']!r}, {run['directories_read']} directories and {run['files_read']}"
                        f" files read, not {want[0]!r}, {want[1]} and {want[2]}")
    if run["directories"] != counts["directories"]:
        problems.append(f"it indexed {run['directories']} directories, not {counts['directories']}")
    if found != counts["candidates"]:
        problems.append(f"it found {found['count']} shared objects, not the {counts['candidates']['count']}"
                        " an independent walk finds (or other ones)")
    if run["answers"] != answers:
        problems.append(f"its answers differ from cold's first: {run['answers']} against {answers}")
    if problems:
        sys.exit(f"find_libs.py: {kind} {state}: " + "; ".join(problems))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="measured rounds (default 9), after one warm-up round")
    parser.add_argument("--files", type=int, default=200_000, help="regular files in the tree (default 200,000)")
    parser.add_argument("--tree", default=default_tree(), help="where the tree is kept (default %(default)s)")
    parser.add_argument("--remove-tree", action="store_true", help="delete the tree kept in --tree, and stop")
    args = parser.parse_args()
    if args.remove_tree:
        shutil.rmtree(args.tree, ignore_errors=True)
        print(f"removed {args.tree}")
        return 0
    if args.runs < 2:
        parser.error("--runs must be at least 2")

    installed_nixld()
    store, manifest = prepared_tree(os.path.abspath(args.tree), args.files)
    names = NAMES
    print(f"tree: {manifest['files']} regular files (each its own inode) and {manifest['symlinks']} symlinks in"
          f" {manifest['packages']} store paths; indexed as a store: {manifest['kinds']['store']['directories']}"
          f" directories, {manifest['kinds']['store']['files_read']} *.so* names; walked whole:"
          f" {manifest['kinds']['walk']['directories']} directories, {manifest['kinds']['walk']['files_read']}"
          " *.so* names")
    print(f"looked up in the index: {', '.join(names)}")
    keys = [f"{kind} {state}" for kind in ("store", "walk") for state in ("cold", "warm")]
    rounds, first = [], {}
    rng = random.Random(20261206)
    with scratch_directory() as workdir:
        answers = {}
        for kind in ("store", "walk"):  # the caches the warm runs read, and the answers all must give
            run = measure(store, os.path.join(workdir, f"{kind}-cache"), kind, names)
            check(run, kind, "cold", manifest, run["answers"])
            answers[kind] = run["answers"]
        for number in range(1 + args.runs):
            order = list(keys)
            rng.shuffle(order)
            timings = {}
            for key in order:
                kind, state = key.split()
                cache = os.path.join(workdir, f"{kind}-cache" if state == "warm" else "cold-cache")
                run = measure(store, cache, kind, names)
                check(run, kind, state, manifest, answers[kind])
                shutil.rmtree(os.path.join(workdir, "cold-cache"), ignore_errors=True)
                timings[key] = run["ns"] / 1e9
            if number == 0:
                first = timings
            else:
                rounds.append(timings)

    print(f"{args.runs} interleaved rounds after one warm-up round; load_index and the look-ups, in a fresh"
          " interpreter each")
    print(f"{'':14}{'median':>9}{'min':>9}{'max':>9}{'first':>9}   (s)   per file of the tree    per file read")
    medians = {key: statistics.median(r[key] for r in rounds) for key in keys}
    for key in keys:
        kind = key.split()[0]
        column = [r[key] for r in rounds]
        read = manifest["kinds"][kind]["files_read"]
        print(f"{key:14}{medians[key]:9.4f}{min(column):9.4f}{max(column):9.4f}{first[key]:9.4f}"
              f"   {medians[key] / (manifest['files'] + manifest['symlinks']) * 1e6:10.2f} µs"
              f"   {medians[key] / read * 1e6:10.2f} µs ({read} files)")
    print()
    ratios = {}
    for kind in ("store", "walk"):
        low, high = bootstrap_ratio(rounds, f"{kind} cold", (f"{kind} warm",), rng)
        ratios[kind] = Ratio(f"{kind}: cold/warm", medians[f"{kind} cold"] / medians[f"{kind} warm"], low, high,
                             BAR if kind == "store" else None, at_most=False)
        print(describe(ratios[kind]))
    print("(walk: a warm run checks every directory's mtime, one stat each, and a cold run does not do much"
          " more per directory, so warm cannot be 20x faster there without missing a change)")
    return verdict([ratios["store"]])


if __name__ == "__main__":
    sys.dont_write_bytecode = True  # a benchmark leaves no files behind
    sys.exit(main())
