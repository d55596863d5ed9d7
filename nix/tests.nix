# nixld's tests that can run inside Nix's build sandbox, against the nixld package: package.nix's
# passthru.tests.pytest, and the flake's checks.<system>.tests.
#
# The others are left to CI (.ci/run), each for what a sandbox does not have: the programs they
# build and start name this machine's loader at its FHS path (/lib64/ld-linux-x86-64.so.2) or
# are Debian's own (/usr/bin), and the NixOS-world tests need a user and mount namespace
# (unshare); some need root or nix-build. Those kept here compile the shim's C with the build's
# compiler and hold it and nixld's Python to the environment contract.
{
  lib,
  stdenv,
  python3Packages,
  nixld,
  testFiles ? [
    "test_config.py"
    "test_env_properties.py"
    "test_shim_contract.py"
    "test_shim_c_units.py"
    "test_structure.py"
  ],
}:

stdenv.mkDerivation {
  pname = "nixld-tests";
  inherit (nixld) version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      # pytest's settings, and the shim's C, which the tests compile on their own terms.
      ../pyproject.toml
      ../nixld/shim
      (lib.fileset.fileFilter (file: lib.any file.hasExt [ "py" "c" ]) ../tests)
    ];
  };

  nativeBuildInputs = [
    nixld
    python3Packages.python
    python3Packages.pytest
    python3Packages.hypothesis
  ];

  dontConfigure = true;
  dontBuild = true;
  doCheck = true;

  # The source's nixld/ holds only the shim's C (no __init__.py), so the nixld that imports is
  # the package's, with its compiled core (conftest.py stops the run otherwise).
  checkPhase = ''
    runHook preCheck
    python -m pytest -p no:cacheprovider ${lib.escapeShellArgs (map (name: "tests/${name}") testFiles)}
    runHook postCheck
  '';

  installPhase = ''
    runHook preInstall
    touch $out
    runHook postInstall
  '';

  passthru = { inherit testFiles; };

  meta = {
    description = "nixld's tests that run inside a build sandbox";
    license = lib.licenses.mit;
    platforms = nixld.meta.platforms;
  };
}
