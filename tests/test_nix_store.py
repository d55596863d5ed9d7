"""find-libs against a real Nix store, with its defaults, as on NixOS.

Debian's nix-bin builds real store paths here (as root, without a sandbox or build users) from
this machine's own files: a "glibc" holding the loader, a "zlib", the test's libraries split
over packages, one package bundling two versions of one library. find-libs is then run with no
root given: /nix/store is searched because it exists.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import FOREIGN, compile_all, require

REAL_LOADER = "/lib64/ld-linux-x86-64.so.2"
TIMEOUT = 120


def derivation(name: str, script: str) -> str:
    return (f'(derivation {{ name = "{name}"; system = "x86_64-linux"; builder = "/bin/sh"; '
            f'PATH = "/usr/bin:/bin"; args = [ "-c" {json.dumps(script)} ]; }})')


@pytest.fixture(scope="module")
def nix_store(tmp_path_factory) -> dict:
    """Store paths built with nix-build from this machine's files; {name: store path}."""
    nix_build = shutil.which("nix-build")
    require(nix_build is not None, "nix-build", package="nix-bin")
    require(os.geteuid() == 0, "root, for nix-build without a daemon or build users", how="run as root, as CI does")
    build = tmp_path_factory.mktemp("nix-sources")
    sources = {}
    for name in ("alpha", "dup"):
        sources[name] = build / f"{name}.c"
        sources[name].write_text(f"int fl_{name}(void) {{ return 0; }}\n")
    sources["dup2"] = build / "dup2.c"
    sources["dup2"].write_text("int fl_dup(void) { return 0; }\nint fl_dup_version_2(void) { return 2; }\n")
    (build / "program.c").write_text("int fl_alpha(void); int fl_dup(void);\n"
                                     "int main(void) { return fl_alpha() + fl_dup(); }\n")
    (build / "v2").mkdir()
    compile_all([["-shared", "-fPIC", "-o", str(build / f"libfl_{n}.so"), str(sources[n])] for n in ("alpha", "dup")]
                + [["-shared", "-fPIC", "-o", str(build / "v2/libfl_dup.so"), str(sources["dup2"])]])
    compile_all([["-o", str(build / "program"), str(build / "program.c"), f"-L{build}", "-lfl_alpha", "-lfl_dup",
                  FOREIGN]])
    packages = {
        "nixld-test-glibc": f"mkdir -p $out/lib && cp {os.path.realpath(REAL_LOADER)} $out/lib/ld-linux-x86-64.so.2",
        "nixld-test-zlib": "mkdir -p $out/lib && cp /usr/lib/x86_64-linux-gnu/libz.so.1 $out/lib/",
        "nixld-test-alpha": f"mkdir -p $out/lib && cp {build}/libfl_alpha.so $out/lib/",
        "nixld-test-dup-bundle": f"mkdir -p $out/lib $out/lib64 && cp {build}/libfl_dup.so $out/lib/ && "
                                 f"cp {build}/v2/libfl_dup.so $out/lib64/",
        "nixld-test-tool": f"mkdir -p $out/bin && cp {build}/program $out/bin/tool",
    }
    expression = "{ " + " ".join(f'"{name}" = {derivation(name, script)};' for name, script in packages.items()) + " }"
    result = subprocess.run([nix_build, "--option", "sandbox", "false", "--option", "build-users-group", "",
                             "--option", "substituters", "", "--no-out-link", "-E", expression],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    paths = result.stdout.split()
    return {name: next(p for p in paths if p.endswith("-" + name)) for name in packages}


def test_find_libs_searches_the_store_by_default_and_the_program_then_runs(nixld_script, nix_store, tmp_path):
    loader = f"{nix_store['nixld-test-glibc']}/lib/ld-linux-x86-64.so.2"
    tool = f"{nix_store['nixld-test-tool']}/bin/tool"
    env = {"PATH": "/usr/bin:/bin", "NIX_LD": loader, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = subprocess.run([nixld_script, "find-libs", "--json", tool], env=env, capture_output=True,
                            timeout=TIMEOUT)
    assert (result.returncode, result.stderr) == (0, b"")
    answer = json.loads(result.stdout)
    assert "/nix/store" in answer["roots"]
    assert answer["index"]["/nix/store"]["how"] in ("built", "cached", "refreshed")
    chosen = {Path(c["directory"]).parent.name.split("-", 1)[1]: c["provides"] for c in answer["chosen"]}
    assert chosen == {"nixld-test-dup-bundle": ["libfl_dup.so"], "nixld-test-alpha": ["libfl_alpha.so"]}
    # (Earlier runs' store paths stay in the store, under other hashes: this run's is looked at.)
    bundle = [c for c in answer["candidates"]["libfl_dup.so"]
              if c["directory"].startswith(nix_store["nixld-test-dup-bundle"] + "/")]
    assert sorted(Path(c["directory"]).name for c in bundle) == ["lib", "lib64"]  # both versions are seen
    run = subprocess.run([nixld_script, "run", tool], env={**env, "NIX_LD_LIBRARY_PATH": answer["value"]},
                         capture_output=True, timeout=TIMEOUT)
    assert (run.returncode, run.stderr) == (0, b"")


def test_doctor_names_what_the_store_program_misses_and_is_content_once_find_libs_value_is_set(nixld_script,
                                                                                              nix_store, tmp_path):
    loader = f"{nix_store['nixld-test-glibc']}/lib/ld-linux-x86-64.so.2"
    tool = f"{nix_store['nixld-test-tool']}/bin/tool"
    env = {"PATH": "/usr/bin:/bin", "NIX_LD": loader, "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "NIX_LD_LIBRARY_PATH": f"{nix_store['nixld-test-zlib']}/lib"}
    before = subprocess.run([nixld_script, "doctor", tool], env=env, capture_output=True, timeout=TIMEOUT)
    assert before.returncode == 1
    assert f"fix: run `nixld find-libs {tool}`".encode() in before.stdout
    found = subprocess.run([nixld_script, "find-libs", "--json", tool], env=env, capture_output=True, timeout=TIMEOUT)
    value = json.loads(found.stdout)["value"]
    assert value.startswith(f"{nix_store['nixld-test-zlib']}/lib:")  # what was in effect stays, first
    after = subprocess.run([nixld_script, "doctor", tool], env={**env, "NIX_LD_LIBRARY_PATH": value},
                           capture_output=True, timeout=TIMEOUT)
    assert after.returncode == 0, after.stdout.decode()
