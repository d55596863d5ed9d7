"""nixld's flake (flake.nix), evaluated by real Nix with the stand-in nixpkgs of tests/nix/nixpkgs
as its one input: `nix flake show` and `nix flake check --no-build` on a copy of the checkout's
files (what a clone holds: a flake sees no more), then its outputs, evaluated with this
machine's stand-in, against what default.nix and nix/module.nix give.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import PROJECT
from nixpkgs_standin import FLAKES, STANDIN, evaluate, git_files, nix_tool, nixld_expression, nixos, pkgs

TIMEOUT = 120
SYSTEMS = ["aarch64-linux", "x86_64-linux"]


@pytest.fixture(scope="module")
def flake(tmp_path_factory) -> str:
    """A copy of the checkout's files, as a path: flake (a git+file: one would leave out what is
    not committed yet)."""
    copy = tmp_path_factory.mktemp("flake")
    for name in git_files("."):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / name, copy / name)
    return f"path:{copy}"


def nix_flake(flake: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([nix_tool("nix"), *FLAKES, "flake", *args, "--override-input", "nixpkgs", f"path:{STANDIN}",
                           "--no-write-lock-file", flake], capture_output=True, text=True, timeout=TIMEOUT)


def test_the_flakes_one_input_is_nixpkgs():
    inputs = evaluate(f"(import {PROJECT}/flake.nix).inputs")
    assert inputs == {"nixpkgs": {"url": "github:NixOS/nixpkgs/nixos-unstable"}}


def test_the_flakes_outputs_are_the_packages_checks_overlay_and_module_nixpkgs_names(flake):
    result = nix_flake(flake, "show", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert sorted(shown) == ["checks", "nixosModules", "overlays", "packages"]
    assert shown["nixosModules"] == {"default": {"type": "nixos-module"}}
    assert shown["overlays"] == {"default": {"type": "nixpkgs-overlay"}}
    for output, names in (("packages", {"default": "nixld", "nixld": "nixld", "shim": "nixld-shim"}),
                          ("checks", {"nixld": "nixld", "shim": "nixld-shim", "tests": "nixld-tests"})):
        assert sorted(shown[output]) == SYSTEMS
        for system in SYSTEMS:
            found = {name: (value["type"], value["name"].rsplit("-", 1)[0]) for name, value in shown[output][system].items()}
            assert found == {name: ("derivation", package) for name, package in names.items()}, (output, system)


def test_nix_flake_check_finds_nothing_wrong(flake):
    result = nix_flake(flake, "check", "--no-build")
    assert result.returncode == 0, result.stderr


def flake_outputs(system: str = "x86_64-linux") -> str:
    """flake.nix's outputs with this machine's stand-in nixpkgs as `nixpkgs`, as Nix calls them."""
    return f"""(let
      flake = import {PROJECT}/flake.nix;
      nixpkgs = {{
        lib = import {STANDIN}/lib.nix;
        legacyPackages = nixpkgs.lib.genAttrs [ "x86_64-linux" "aarch64-linux" ]
          (system: import {STANDIN} {{ inherit system host; }});
      }};
      outputs = flake.outputs {{ self = outputs; inherit nixpkgs; }};
    in outputs)"""


@pytest.mark.parametrize("system", SYSTEMS)
def test_the_flakes_packages_and_checks_are_default_nixs_nixld_and_its_shim_and_tests(system):
    found = evaluate(f"""let outputs = {flake_outputs()}; nixld = {nixld_expression(system)}; in {{
      packages = builtins.mapAttrs (name: package: package.drvPath) outputs.packages.{system};
      checks = builtins.mapAttrs (name: check: check.drvPath) outputs.checks.{system};
      expected = {{ nixld = nixld.drvPath; shim = nixld.shim.drvPath; tests = nixld.tests.pytest.drvPath; }};
    }}""")
    expected = found["expected"]
    assert found["packages"] == {"default": expected["nixld"], "nixld": expected["nixld"], "shim": expected["shim"]}
    assert found["checks"] == expected


def test_the_overlay_adds_default_nixs_nixld():
    found = evaluate(f"""let outputs = {flake_outputs()}; pkgs = {pkgs()}; in [
      (outputs.overlays.default pkgs pkgs).nixld.drvPath
      {nixld_expression()}.drvPath
    ]""")
    assert found[0] == found[1]


def test_the_flakes_nixos_module_is_nix_module_nix():
    def configuration(module: str) -> dict:
        return evaluate(f"""let c = {nixos(f"[ ({module}) {{ programs.nixld.enable = true; }} ]")}.config; in {{
          inherit (c.environment) ldso ldso32 sessionVariables;
          packages = map (p: p.drvPath) c.environment.systemPackages;
        }}""")

    assert configuration(f"{flake_outputs()}.nixosModules.default") == configuration(f"{PROJECT}/nix/module.nix")
