"""nixld's NixOS module (nix/module.nix), evaluated with the stand-in NixOS of tests/nix/nixos
(nixpkgs' nix-ld module, NixOS's ldso and stub-ld modules, the module system, each a stand-in),
and then a whole configuration with it built into /nix/store and switched on in the NixOS-like
namespace of test_nixos_world.py: its tmpfiles links at the interpreter paths, its system at
/run/current-system, its session variables in the programs' environment.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
from conftest import I386_LOADER, PROGRAMS, PROJECT, compile_all, require, why_gcc_cannot_build_32_bit
from nixpkgs_standin import built, built_nixld, evaluate, evaluation_error, nixos, pkgs
from test_nixos_world import World

MODULE = PROJECT / "nix" / "module.nix"
ENABLED = "{ programs.nixld.enable = true; }"
DEFAULT_LOADER = "/run/current-system/sw/share/nix-ld/lib/ld.so"
DEFAULT_LIBRARY_DIR = "/run/current-system/sw/share/nix-ld/lib"


def configuration(*modules: str, system: str = "x86_64-linux", with_module: bool = True) -> dict:
    """What the stand-in NixOS configuration of `modules` (Nix expressions) sets where nixld's
    module acts, with store paths for packages; nix-ld's package is null where none is set."""
    listed = " ".join([*([str(MODULE)] if with_module else []), *(f"({module})" for module in modules)])
    return evaluate(f"""
      let
        evaluated = {nixos(f"[ {listed} ]", system)};
        c = evaluated.config;
        package = builtins.tryEval c.programs.nix-ld.package.outPath;
      in {{
        nixLd = {{
          inherit (c.programs.nix-ld) enable;
          package = if package.success then package.value else null;
          libraries = map (p: p.outPath) c.programs.nix-ld.libraries;
        }};
        inherit (c.environment) ldso ldso32 sessionVariables;
        systemPackages = map (p: p.name) c.environment.systemPackages;
        systemPackagePaths = map (p: p.outPath) c.environment.systemPackages;
        tmpfilesRules = c.systemd.tmpfiles.rules;
        inherit (evaluated) failedAssertions;
      }}""")


@pytest.fixture(scope="module")
def packages() -> dict:
    return built_nixld()


def test_enabling_nixld_puts_its_shims_at_both_interpreter_paths_through_nix_ld(packages):
    shim = packages["shim"]
    config = configuration(ENABLED)
    assert config["nixLd"] == {"enable": True, "package": shim, "libraries": []}
    assert config["ldso"] == f"{shim}/libexec/nix-ld"
    assert config["ldso32"] == f"{shim}/libexec/nix-ld32"
    assert config["tmpfilesRules"] == [
        "d /lib64 0755 root root - -", f"L+ /lib64/ld-linux-x86-64.so.2 - - - - {shim}/libexec/nix-ld",
        "d /lib 0755 root root - -", f"L+ /lib/ld-linux.so.2 - - - - {shim}/libexec/nix-ld32",
    ]
    assert config["failedAssertions"] == []


def test_enabling_nixld_installs_the_same_nixld_that_default_nix_builds(packages):
    config = configuration(ENABLED)
    assert packages["nixld"] in config["systemPackagePaths"]
    assert config["systemPackages"] == ["ld-library-path", "nixld-" + Path(packages["nixld"]).name.rsplit("-", 1)[1]]


def test_the_i686_shim_is_given_nixpkgs_i686_loader_and_nix_lds_variables_stay(packages):
    i686_loader = evaluate(f"{pkgs()}.pkgsi686Linux.stdenv.cc.bintools.dynamicLinker")
    assert configuration(ENABLED)["sessionVariables"] == {
        "NIX_LD": DEFAULT_LOADER, "NIX_LD_LIBRARY_PATH": DEFAULT_LIBRARY_DIR, "NIX_LD_i686_linux": i686_loader}
    mine = configuration(ENABLED, '{ environment.sessionVariables.NIX_LD_i686_linux = "/opt/i686/ld-linux.so.2"; }')
    assert mine["sessionVariables"]["NIX_LD_i686_linux"] == "/opt/i686/ld-linux.so.2"


def test_without_enable_the_module_changes_nothing():
    without = configuration(with_module=False)
    assert configuration() == without
    assert without["nixLd"] == {"enable": False, "package": None, "libraries": []}
    assert "stub-ld" in without["ldso"] and "stub-ld" in without["ldso32"]


def test_on_aarch64_there_is_no_32_bit_shim_and_the_interpreter_path_is_aarch64s():
    config = configuration(ENABLED, system="aarch64-linux")
    shim = config["nixLd"]["package"]
    assert shim.endswith("-nixld-shim-" + Path(built_nixld()["shim"]).name.rsplit("-", 1)[1])
    assert (config["ldso"], config["ldso32"]) == (f"{shim}/libexec/nix-ld", None)
    assert config["tmpfilesRules"] == ["d /lib 0755 root root - -",
                                       f"L+ /lib/ld-linux-aarch64.so.1 - - - - {shim}/libexec/nix-ld"]
    assert "NIX_LD_i686_linux" not in config["sessionVariables"]
    assert config["failedAssertions"] == []


def test_nix_lds_libraries_stay_the_one_list_of_libraries(packages):
    libraries = f"with {pkgs()}; [ python3 glibc ]"
    config = configuration(ENABLED, f"{{ programs.nix-ld.libraries = {libraries}; }}")
    assert config["nixLd"]["libraries"] == evaluate(f"map (p: p.outPath) ({libraries})")


def test_nixlds_package_is_the_one_its_option_names(packages):
    other = f"{pkgs()}.python3 // {{ shim = {pkgs()}.glibc; }}"
    config = configuration(ENABLED, f"{{ programs.nixld.package = {other}; }}")
    glibc = evaluate(f"{pkgs()}.glibc.outPath")
    assert (config["nixLd"]["package"], config["ldso"]) == (glibc, f"{glibc}/libexec/nix-ld")
    assert "python3-" + evaluate(f"{pkgs()}.python3.version") in config["systemPackages"]


def test_a_second_nix_ld_package_is_refused_as_nixos_refuses_it():
    error = evaluation_error(nixos(f'[ {MODULE} ({ENABLED}) {{ programs.nix-ld.package = "/nix/store/x"; }} ]')
                             + ".config.environment.ldso")
    assert "The option `programs.nix-ld.package' is defined multiple times" in error


# ---------------------------------------------------------------------------------------------
# The configuration, built and switched on in the NixOS-like world

GREETING = "a library of programs.nix-ld.libraries"

# A library package for programs.nix-ld.libraries, built with the stand-in's compiler.
LIBRARY_PACKAGE = f"""({{ pkgs, ... }}: {{
  programs.nix-ld.libraries = [
    (pkgs.stdenv.mkDerivation {{
      name = "nixldtest-library";
      dontUnpack = true;
      installPhase = ''
        mkdir -p $out/lib
        gcc -shared -fPIC -DGREETING='"{GREETING}"' -o $out/lib/libnixldtest.so ${{{PROGRAMS}/nixldtest.c}}
      '';
    }})
  ];
}})"""


@pytest.fixture(scope="module")
def nixos_system() -> dict:
    """The stand-in NixOS system with nixld enabled and a library in programs.nix-ld.libraries,
    built: {"toplevel", "library", "variables", "rules"}."""
    # Its NIX_LD_i686_linux names the stand-in's i686 glibc, a store copy of this machine's.
    require(os.path.exists(I386_LOADER), f"the i386 loader {I386_LOADER} is missing", package="libc6-i386")
    expression = nixos(f"[ {MODULE} ({ENABLED}) {LIBRARY_PACKAGE} ]")
    toplevel, library = built(f"let e = {expression}; in [ e.toplevel (builtins.head e.config.programs.nix-ld.libraries) ]")
    configuration_json = json.loads(Path(toplevel, "configuration.json").read_text())
    return {"toplevel": toplevel, "library": library, "variables": configuration_json["sessionVariables"],
            "rules": configuration_json["tmpfilesRules"]}


class NixosWorld(World):
    """The NixOS-like world as the system makes it: the tmpfiles links at the interpreter paths
    (/lib64's by the world's own /lib64; /lib/ld-linux.so.2's, when `with_32_bit`, by mounting
    the i686 shim over this machine's i386 loader), /run/current-system the built system. The
    runner starts through the shim with NIX_LD unset: nix-ld's default, which the system
    provides, is what starts it."""

    def __init__(self, root: Path, nixld_script: str, system: dict, with_32_bit: bool = False) -> None:
        super().__init__(root, nixld_script)
        links = {}
        for rule in system["rules"]:
            kind, path, *_, target = rule.split()
            if kind == "L+":
                links[path] = target
        (self.lib64 / "ld-linux-x86-64.so.2").symlink_to(links["/lib64/ld-linux-x86-64.so.2"])
        run = root / "run"
        run.mkdir()
        (run / "current-system").symlink_to(system["toplevel"])
        mounts = [f"mount --bind {shlex.quote(str(run))} /run"]
        if with_32_bit:
            mounts.append(f"mount --bind {shlex.quote(links['/lib/ld-linux.so.2'])} "
                          f"{shlex.quote(os.path.realpath(I386_LOADER))}")
        # Last: from then on this machine's programs (mount too) start only through the shim.
        mounts.append('mount --bind "$1" /lib64')
        self.START_RUNNER = " && ".join([*mounts, "unset NIX_LD NIX_LD_x86_64_linux NIX_LD_LIBRARY_PATH",
                                         'exec "$3" "$4" "$5"'])
        self.session = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **system["variables"]}


@pytest.fixture(scope="module")
def uses_nix_ld_library(tmp_path_factory, nixos_system) -> str:
    """uses_library.c linked against the system's library package, with this machine's
    interpreter path and no run path: the loader must find the library through nix-ld's."""
    program = tmp_path_factory.mktemp("nixos-programs") / "uses-library"
    compile_all([["-o", str(program), str(PROGRAMS / "uses_library.c"), f"-L{nixos_system['library']}/lib",
                  "-lnixldtest"]])
    return str(program)


def test_the_systems_nix_ld_default_loader_is_the_stand_ins_glibc(nixos_system):
    glibc = evaluate(f"{pkgs()}.glibc.outPath")
    loader = os.path.realpath(DEFAULT_LOADER.replace("/run/current-system", nixos_system["toplevel"]))
    assert loader == f"{glibc}/lib/ld-linux-x86-64.so.2"


@pytest.mark.nixos_world
def test_in_a_system_with_nixld_enabled_foreign_programs_start_through_its_shim(nixos_system, uses_nix_ld_library,
                                                                                tmp_path, nixld_script):
    world = NixosWorld(tmp_path, nixld_script, nixos_system)
    store_loader = f"{evaluate(pkgs() + '.glibc.outPath')}/lib/ld-linux-x86-64.so.2"
    true, exe, library, library_bare, doctor = world.run(
        {"argv": ["/usr/bin/true"], "env": world.session},
        {"argv": ["/usr/bin/readlink", "/proc/self/exe"], "env": {**world.session, "NIX_LD": store_loader}},
        {"argv": [uses_nix_ld_library, "/usr/bin/env"], "env": world.session},
        {"argv": [uses_nix_ld_library], "env": {}},  # env -i: nix-ld's defaults are the system's
        {"argv": ["/run/current-system/sw/bin/nixld", "doctor", "--json"], "env": world.session},
    )
    assert (true.returncode, true.stderr) == (0, b"")
    assert (exe.returncode, exe.stdout) == (0, b"/usr/bin/readlink\n")
    assert (library.returncode, library.stderr) == (0, b""), library.stderr
    greeting, *environment = library.stdout.decode().splitlines()
    assert greeting == GREETING
    assert sorted(environment) == sorted(f"{name}={value}" for name, value in world.session.items())
    assert (library_bare.returncode, library_bare.stdout) == (0, f"{GREETING}\n".encode())
    interpreters = {entry["path"]: entry for entry in json.loads(doctor.stdout)["interpreter_paths"]}
    assert interpreters["/lib64/ld-linux-x86-64.so.2"]["shim"] == "installed"  # nixld's shim --path, byte for byte


@pytest.mark.nixos_world
def test_in_a_system_with_nixld_enabled_32_bit_programs_start_through_the_i686_shim(nixos_system, tmp_path,
                                                                                  nixld_script):
    why = why_gcc_cannot_build_32_bit()
    require(why is None, f"gcc cannot build 32-bit programs ({why})", package="gcc-multilib")
    require(os.path.exists(I386_LOADER), f"the i386 loader {I386_LOADER} is missing", package="libc6-i386")
    probe32 = tmp_path / "probe32"
    compile_all([["-m32", "-o", str(probe32), str(PROGRAMS / "probe.c")]])
    (tmp_path / "world").mkdir()
    world = NixosWorld(tmp_path / "world", nixld_script, nixos_system, with_32_bit=True)
    without_i686_loader = {name: value for name, value in world.session.items() if name != "NIX_LD_i686_linux"}
    exe, env, refused, doctor = world.run(
        {"argv": [str(probe32), "exe"], "env": world.session},
        {"argv": [str(probe32), "env"], "env": world.session},
        {"argv": [str(probe32), "exe"], "env": without_i686_loader},
        {"argv": ["/run/current-system/sw/bin/nixld", "doctor", "--json"], "env": world.session},
    )
    assert (exe.returncode, exe.stderr, exe.stdout) == (0, b"", f"{probe32}\n".encode())
    assert env.stdout == f"LD_LIBRARY_PATH unset\nNIX_LD_LIBRARY_PATH={DEFAULT_LIBRARY_DIR}\n".encode()
    # NIX_LD names the 64-bit loader, which the i686 shim refuses in one line: why the module
    # sets NIX_LD_i686_linux.
    assert refused.returncode == 126
    assert refused.stderr.startswith(f"nixld shim: {probe32}: loader {DEFAULT_LOADER}".encode())
    assert b"(it is 64-bit, the program 32-bit)" in refused.stderr and refused.stderr.count(b"\n") == 1
    interpreters = {entry["path"]: entry for entry in json.loads(doctor.stdout)["interpreter_paths"]}
    assert interpreters["/lib/ld-linux.so.2"]["shim"] == "installed"
