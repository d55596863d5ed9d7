# nixld for Nix: `pkgs.callPackage ./package.nix { }`, as flake.nix, default.nix and the NixOS
# module (nix/module.nix) call it. The CLI and the Python API, built from this source tree with
# nixpkgs' Python tooling; the C core, the shims and the demo are compiled by Nix's compiler
# when the package is built. Its `shim` attribute is the shim alone (nix/shim.nix), laid out
# as nixpkgs' nix-ld package is, for programs.nix-ld.package.
{
  lib,
  callPackage,
  python3Packages,
  stdenv,
}:

let
  version = builtins.head (
    builtins.match ''.*__version__ = "([^"]+)".*'' (builtins.readFile ./nixld/__init__.py)
  );

  shim = callPackage ./nix/shim.nix { inherit version; };

  # nix-ld's spelling of a Nix system, which nixld's shim files are named by.
  shimSystem = system: lib.replaceStrings [ "-" ] [ "_" ] system;

  nixld = python3Packages.buildPythonApplication {
    pname = "nixld";
    inherit version;
    pyproject = true;

    src = lib.fileset.toSource {
      root = ./.;
      fileset = lib.fileset.unions [
        ./pyproject.toml
        ./setup.py
        ./MANIFEST.in
        ./README.md
        ./demo
        # The package's sources, and not what a build in a checkout leaves beside them.
        (lib.fileset.fileFilter (file: lib.any file.hasExt [ "py" "c" "h" ]) ./nixld)
      ];
    };

    build-system = with python3Packages; [
      setuptools
      cffi
    ];

    dependencies = with python3Packages; [
      cffi
      pyelftools
    ];

    # setup.py builds the shims into the package too; they become the shim package's files, so
    # that what `nixld shim --path` names is, byte for byte, what NixOS puts at the interpreter
    # path (and `nixld doctor` recognises it as such).
    postInstall =
      ''
        shims=$out/${python3Packages.python.sitePackages}/nixld/shim
        ln -sf ${shim}/libexec/nix-ld $shims/nixld-shim-${shimSystem stdenv.hostPlatform.system}
      ''
      + lib.optionalString stdenv.hostPlatform.isx86_64 ''
        ln -sf ${shim}/libexec/nix-ld32 $shims/nixld-shim-${shimSystem "i686-linux"}
      '';

    # `import nixld` succeeds without the compiled C core (it falls back to os.execve): the
    # core is checked by name.
    pythonImportsCheck = [
      "nixld"
      "nixld._exec"
    ];

    # The tests start programs through this machine's loader at its FHS path, which a build
    # sandbox does not have, and some need namespaces: passthru.tests.pytest runs the ones that
    # can run in a sandbox, against this package.
    doCheck = false;

    passthru = {
      inherit shim;
      tests.pytest = callPackage ./nix/tests.nix { inherit nixld; };
    };

    meta = {
      description = "Run unpatched, dynamically linked Linux binaries on NixOS, through the real loader";
      license = lib.licenses.mit;
      mainProgram = "nixld";
      platforms = lib.platforms.linux;
    };
  };
in
nixld
