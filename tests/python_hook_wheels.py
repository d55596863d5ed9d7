"""A survey, run by hand: popular wheels from PyPI under a Python whose loader finds neither
libstdc++ nor libgcc_s (tests/hidden_libraries.py), without and with nixld's Python hook.

For each package: which of its shared objects need libstdc++.so.6 or libgcc_s.so.1 from the
system (in the JSON) and which libraries the hook loaded for its import (NIX_LD_LOG=info);
whether `import` and a small use of it work without the hook (and whether it then fell back
silently, as protobuf, google-crc32c and rapidfuzz do, or warned, as pillow does); whether
they work with the hook, the libraries in NIX_LD_LIBRARY_PATH; and the time of that first
import with the hook against the loader finding the same libraries through LD_LIBRARY_PATH
(the workaround that leaks), timed in turns.
Prints a table, and the same as JSON with --json FILE.

    python tests/python_hook_wheels.py [--python PYTHON] [--wheels DIR] [--runs N] [--json FILE] [--only REQ...]

Wheels are downloaded (pip, by PYTHON) into DIR (default ~/.cache/nixld/survey-wheels) once;
the virtualenv is made in a temporary directory. Needs unshare, as the tests do.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from hidden_libraries import HIDDEN, HiddenLibraries, why_not_here

# (pip requirement, what to import, a small use of it whose value is printed). The value of
# rapidfuzz's and of the last four tells whether the compiled part or a fallback was used.
WHEELS = [
    ("numpy", "import numpy", "int(numpy.arange(6).reshape(2, 3).sum())"),
    ("pandas", "import pandas", "pandas.Series([1, 2, 3]).rolling(2).sum().tolist()[1:]"),
    ("scipy", "import scipy.linalg", "round(float(scipy.linalg.det([[1, 2], [3, 4]])), 6)"),
    ("scikit-learn", "import sklearn.linear_model",
     "sklearn.linear_model.LinearRegression().fit([[0], [1], [2]], [0, 2, 4]).coef_.round(6).tolist()"),
    ("matplotlib", "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt",
     "len(plt.plot([1, 2])[0].get_xydata())"),
    ("contourpy", "import contourpy", "type(contourpy.contour_generator(z=[[0, 1], [1, 2]])).__name__"),
    ("kiwisolver", "import kiwisolver", "kiwisolver.Variable('x').name()"),
    ("pyarrow", "import pyarrow.compute", "pyarrow.compute.sum(pyarrow.array([1, 2, 3])).as_py()"),
    ("polars", "import polars", "polars.DataFrame({'a': [1, 2]}).sum().item()"),
    ("duckdb", "import duckdb", "duckdb.sql('select 6 * 7').fetchall()"),
    ("grpcio", "import grpc", "grpc.StatusCode.OK.name"),
    ("pyzmq", "import zmq", "zmq.zmq_version()"),
    ("onnxruntime", "import onnxruntime", "onnxruntime.get_device()"),
    ("tokenizers", "import tokenizers, tokenizers.models", "tokenizers.Tokenizer(tokenizers.models.BPE()).get_vocab_size()"),
    ("tiktoken", "import tiktoken._tiktoken", "'CoreBPE' in dir(tiktoken._tiktoken)"),
    ("safetensors", "import safetensors.numpy, numpy",
     "len(safetensors.numpy.save({'a': numpy.zeros(2)}))"),
    ("pydantic-core", "import pydantic_core", "pydantic_core.SchemaValidator({'type': 'int'}).validate_python('3')"),
    ("orjson", "import orjson", "orjson.dumps([1, 2]).decode()"),
    ("cryptography", "from cryptography.hazmat.primitives import hashes",
     "(lambda h: (h.update(b'x'), h.finalize().hex()[:8])[1])(hashes.Hash(hashes.SHA256()))"),
    ("bcrypt", "import bcrypt", "bcrypt.checkpw(b'a', bcrypt.hashpw(b'a', bcrypt.gensalt(4)))"),
    ("faiss-cpu", "import faiss", "faiss.IndexFlatL2(4).d"),
    ("lightgbm", "import lightgbm", "type(lightgbm.Dataset([[0.0]])).__name__"),
    ("xgboost", "import xgboost", "xgboost.build_info()['USE_OPENMP']"),
    ("llvmlite", "import llvmlite.binding as llvm", "llvm.llvm_version_info[0] > 0"),
    ("numba", "import numba", "numba.njit(lambda x: x + 1)(41)"),
    ("opencv-python-headless", "import cv2", "cv2.countNonZero(cv2.UMat(2, 2, cv2.CV_8U, 1).get())"),
    ("shapely", "import shapely", "round(shapely.Point(0, 0).buffer(1).area, 2)"),
    ("pyproj", "import pyproj", "pyproj.CRS('EPSG:4326').name"),
    ("h5py", "import h5py", "h5py.version.hdf5_version"),
    ("scikit-image", "import skimage.filters, numpy", "float(skimage.filters.gaussian(numpy.ones((3, 3))).sum())"),
    ("sentencepiece", "import sentencepiece", "type(sentencepiece.SentencePieceProcessor()).__name__"),
    ("rapidfuzz", "from rapidfuzz import fuzz", "(fuzz.ratio('this', 'that'), fuzz.ratio.__module__)"),
    ("numexpr", "import numexpr", "int(numexpr.evaluate('1 + 2'))"),
    ("greenlet", "import greenlet", "greenlet.greenlet(lambda: 42).switch()"),
    ("msgpack", "import msgpack", "type(msgpack.Packer()).__module__"),
    ("torch", "import torch", "torch.ones(2).sum().item()"),
    ("jax[cpu]", "import jax.numpy as jnp", "float(jnp.arange(4).sum())"),
    ("pillow", "from PIL import features", "features.check('avif')"),
    ("protobuf", "from google.protobuf.internal import api_implementation", "api_implementation.Type()"),
    ("google-crc32c", "import google_crc32c", "google_crc32c.implementation"),
    ("psycopg2-binary", "import psycopg2", "psycopg2.__libpq_version__"),
]

PROBE = r"""
import json, sys, time, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    start = time.perf_counter()
    try:
        exec(sys.argv[1])
        value = eval(sys.argv[2])
    except BaseException as error:
        lines = [line for line in (str(error).splitlines() or [type(error).__name__]) if line.strip()]
        answer = {"ok": False, "error": type(error).__name__ + ": " + lines[0]}
    else:
        answer = {"ok": True, "value": repr(value)[:60], "seconds": time.perf_counter() - start}
# A package that only warns (pillow) says so here.
answer["warnings"] = [str(w.message).splitlines()[0] for w in caught if "shared object" in str(w.message)]
print(json.dumps(answer))
"""

def answer(result) -> dict:
    """The probe's answer: its last line (a package may print before it), or what went wrong."""
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if lines:
        return json.loads(lines[-1])
    said = [line for line in result.stderr.splitlines() if line.strip()]
    return {"ok": False, "error": f"exit status {result.returncode}: {said[-1] if said else 'nothing said'}"}


def needs_from_system(site: Path, package_files: list[str]) -> list[str]:
    """Which of HIDDEN the package's shared objects name in DT_NEEDED (what a wheel cannot bundle)."""
    from nixld.objects import ObjectCache, ObjectError

    objects = ObjectCache()
    found = set()
    for name in package_files:
        if ".so" not in name:
            continue
        try:
            found |= set(objects.load(os.fsencode(site / name)).needed) & {n.encode() for n in HIDDEN}
        except (OSError, ObjectError, ValueError):
            continue
    return sorted(name.decode() for name in found)


def installed_files(python: str, requirement: str) -> tuple[str, list[str]]:
    """The version of the distribution and the files it installed (relative to site-packages)."""
    name = requirement.split("[")[0]
    code = ("import importlib.metadata as m, sys; d = m.distribution(sys.argv[1]); "
            "print(d.version); print(*[str(f) for f in d.files or []], sep='\\n')")
    lines = subprocess.run([python, "-c", code, name], capture_output=True, text=True, check=True).stdout.splitlines()
    return lines[0], lines[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--wheels", default=str(Path.home() / ".cache" / "nixld" / "survey-wheels"))
    parser.add_argument("--runs", type=int, default=3, help="timed imports per package and way (median)")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--only", nargs="*", help="these requirements alone")
    args = parser.parse_args()
    why = why_not_here()
    if why:
        sys.exit(f"python_hook_wheels.py: cannot hide the libraries here: {why}")
    wheels = [entry for entry in WHEELS if not args.only or entry[0] in args.only]
    requirements = [requirement for requirement, _, _ in wheels]
    os.makedirs(args.wheels, exist_ok=True)
    subprocess.run([args.python, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", args.wheels,
                    *requirements], check=True)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        subprocess.run([args.python, "-m", "venv", str(root / "venv")], check=True)
        python = str(root / "venv" / "bin" / "python")
        subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--find-links", args.wheels,
                        "--only-binary=:all:", *requirements], check=True)
        site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   capture_output=True, text=True, check=True).stdout.strip())
        world = HiddenLibraries(root / "world")
        base = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(root)}
        leaky = dict(base, LD_LIBRARY_PATH=str(world.nix_ld_lib))
        hooked = dict(base, NIX_LD_LIBRARY_PATH=str(world.nix_ld_lib))

        def jobs(env, runs):
            return [{"argv": [python, "-c", PROBE, statement, use], "env": env}
                    for _, statement, use in wheels for _ in range(runs)]

        def answers(results, runs):
            parsed = [answer(result) for result in results]
            return [parsed[index * runs:(index + 1) * runs] for index in range(len(wheels))]

        without = answers(world.run(*jobs(base, 1), timeout=3600), 1)
        subprocess.run([sys.executable, "-m", "nixld", "python-hook", "install", "--python", python], check=True,
                       stdout=subprocess.DEVNULL)
        told = world.run(*jobs(dict(hooked, NIX_LD_LOG="info"), 1), timeout=3600)
        # Timed in turns, the hook's way and LD_LIBRARY_PATH's (where the hook, installed, does
        # nothing), so that the machine's drift falls on both alike.
        timed = world.run(*[job for pair in zip(jobs(hooked, args.runs), jobs(leaky, args.runs)) for job in pair],
                          timeout=3600)
        with_hook, with_ld_library_path = answers(timed[0::2], args.runs), answers(timed[1::2], args.runs)

        rows = []
        for index, (requirement, _, _) in enumerate(wheels):
            version, files = installed_files(python, requirement)
            hook_runs, leak_runs = with_hook[index], with_ld_library_path[index]
            seconds = [run["seconds"] for run in hook_runs if run["ok"]]
            leak_seconds = [run["seconds"] for run in leak_runs if run["ok"]]
            rows.append({
                "package": requirement, "version": version, "needs": needs_from_system(site, files),
                "without": without[index][0], "with_hook": hook_runs[0], "with_ld_library_path": leak_runs[0],
                "hook_loaded": sorted({line.split(" for ")[0].rsplit("/", 1)[-1] for line in told[index].stderr.splitlines()
                                       if line.startswith("nixld python-hook: info: loaded ")}),
                "hook_ms": statistics.median(seconds) * 1e3 if seconds else None,
                "ld_library_path_ms": statistics.median(leak_seconds) * 1e3 if leak_seconds else None,
            })
    version = subprocess.run([args.python, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{version}; libstdc++ and libgcc_s hidden from the loader; copies in NIX_LD_LIBRARY_PATH\n")
    print(f"{'package':26}{'the hook loaded':30}{'without the hook':44}{'with the hook':34}"
          f"{'import ms (hook/LD_LIBRARY_PATH)'}")
    for row in rows:
        without = "works: " + row["without"]["value"] if row["without"]["ok"] else row["without"]["error"]
        if row["without"].get("warnings"):
            without = "warns: " + row["without"]["warnings"][0]
        hooked = "works: " + row["with_hook"]["value"] if row["with_hook"]["ok"] else row["with_hook"]["error"]
        times = (f"{row['hook_ms']:.0f} / {row['ld_library_path_ms']:.0f}"
                 if row["hook_ms"] is not None and row["ld_library_path_ms"] is not None else "")
        print(f"{row['package'] + ' ' + row['version']:26.25}{', '.join(row['hook_loaded']) or '-':30.29}{without:44.43}"
              f"{hooked:34.33}{times}")
    if args.json:
        Path(args.json).write_text(json.dumps({"python": version, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
