"""Runs commands inside the NixOS-like world of test_nixos_world.py and reports what happened.

Started (through a copy of the loader) inside a mount namespace where /lib64 is hidden, so no
Debian tool can start there except through a loader given by hand. Usage:
`nixos_world_runner.py JOBS.json`; each job is {"argv": [...], "env": {...}, "input": str|null};
prints a JSON list with, per job, {"returncode", "stdout", "stderr"} or {"errno", "error"}.
Bytes travel as str with surrogate escapes (os.fsdecode), which JSON carries unchanged.
"""

import json
import os
import subprocess
import sys


def run(job: dict) -> dict:
    data = job.get("input")
    try:
        result = subprocess.run(
            [os.fsencode(arg) for arg in job["argv"]],
            env={os.fsencode(k): os.fsencode(v) for k, v in job["env"].items()},
            input=None if data is None else os.fsencode(data),
            capture_output=True,
            timeout=60,
        )
    except OSError as error:
        return {"errno": error.errno, "error": str(error)}
    return {"returncode": result.returncode, "stdout": os.fsdecode(result.stdout),
            "stderr": os.fsdecode(result.stderr)}


def main() -> int:
    with open(sys.argv[1]) as file:
        jobs = json.load(file)
    json.dump([run(job) for job in jobs], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
