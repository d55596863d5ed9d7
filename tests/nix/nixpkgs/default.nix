# A stand-in for the parts of nixpkgs that nixld's Nix files use (package.nix, nix/*.nix,
# default.nix, flake.nix) and the stand-in NixOS modules in tests/nix/nixos, so that the tests
# can evaluate those files and build them with real Nix into /nix/store on a machine with no
# nixpkgs. It is built from this machine's own tools, and is written to behave as nixpkgs does
# for exactly these interfaces, no more:
#
# - stdenv.mkDerivation: pname and version make the name; the arguments become the builder's
#   environment, but passthru and meta, which are attributes of the result; inputs
#   (nativeBuildInputs, buildInputs, propagatedBuildInputs, with what those propagate) are on
#   PATH and PYTHONPATH; setup.sh runs the phases. The compiler is this machine's gcc, with no
#   wrapper (so hardeningDisable changes nothing here). stdenv.hostPlatform and
#   stdenv.cc.bintools.dynamicLinker are nixpkgs' facts for the system evaluated.
# - glibc, pkgsi686Linux: a "glibc" holding nothing but a copy of this machine's loader, at the
#   name nixpkgs' glibc gives it, so that dynamicLinker names a store path.
# - callPackage: passes the arguments a function names from this set, then the given ones (no
#   .override).
# - python3: a virtual environment of this machine's Python without its packages: like
#   nixpkgs' interpreter, it sees only what PYTHONPATH or a wrapper adds. python3Packages: the
#   packages nixld's files name, and what they need, each a copy of this machine's installed
#   distribution (host.packages). buildPythonApplication with pyproject = true: the wheel is
#   built with setuptools' PEP 517 backend and installed by pip (nixpkgs' pypaBuildHook and
#   pypaInstallHook run `python -m build` and `python -m installer`), the programs in bin/
#   are given their dependencies' site-packages as nixpkgs' wrapPythonPrograms gives them
#   (without its makeWrapper shell), and pythonImportsCheck imports the modules from $out.
# - buildEnv: links the top-level entries of each package's pathsToLink directories under
#   extraPrefix (the first wins a collision when ignoreCollisions), then runs postBuild;
#   nixpkgs' buildEnv also merges directories.
#
# host: what the tests found on this machine (tests/nixpkgs_standin.py); the defaults are
# enough to evaluate, as `nix flake check` does, but not to build.
{
  system ? builtins.currentSystem,
  host ? { },
}:

let
  lib = import ./lib.nix;

  facts = {
    # The interpreter the stand-in python3 is a virtual environment of, and its version.
    python = "/usr/bin/python3";
    pythonVersion = "3";
    # Where this machine's Python packages are installed, and which of them there are:
    # { name = { version; dependencies = [ names ]; }; }.
    pythonPath = "";
    packages = { };
    # This machine's loaders, by Nix system, and its own tools.
    loaders = { };
    hostPath = "/usr/bin:/bin";
  } // host;

  # nixpkgs' facts about the systems evaluated here.
  platforms = {
    x86_64-linux = {
      isx86_64 = true;
      libDir = "lib64";
      loaderName = "ld-linux-x86-64.so.2";
    };
    i686-linux = {
      isx86_64 = false;
      libDir = "lib";
      loaderName = "ld-linux.so.2";
    };
    aarch64-linux = {
      isx86_64 = false;
      libDir = "lib";
      loaderName = "ld-linux-aarch64.so.1";
    };
  };

  stdenvFor =
    system:
    let
      platform = platforms.${system};
      glibc = glibcFor system;
    in
    {
      hostPlatform = {
        inherit system;
        inherit (platform) isx86_64 libDir;
        isLinux = true;
        isAarch64 = system == "aarch64-linux";
      };
      cc.bintools.dynamicLinker = "${glibc}/lib/${platform.loaderName}";
      mkDerivation = mkDerivationFor system;
    };

  inputClosure =
    inputs:
    map (item: item.package) (
      builtins.genericClosure {
        startSet = map (package: {
          key = package.outPath;
          inherit package;
        }) inputs;
        operator =
          item:
          map (package: {
            key = package.outPath;
            inherit package;
          }) (item.package.propagatedBuildInputs or [ ]);
      }
    );

  mkDerivationFor =
    system: args:
    let
      name = args.name or "${args.pname}-${args.version}";
      environment = removeAttrs args [
        "passthru"
        "meta"
      ];
      derivation = builtins.derivation (
        environment
        // {
          inherit name system;
          builder = "/bin/bash";
          args = [ ./setup.sh ];
          inherit (facts) hostPath;
          stdenvInputs = inputClosure (
            (args.nativeBuildInputs or [ ]) ++ (args.buildInputs or [ ]) ++ (args.propagatedBuildInputs or [ ])
          );
        }
      );
    in
    derivation // (args.passthru or { }) // { meta = args.meta or { }; };

  glibcFor =
    system:
    mkDerivationFor system {
      pname = "glibc";
      version = "host";
      dontUnpack = true;
      # Known at build time: a configuration for another system is evaluated, never built.
      loader = facts.loaders.${system} or "";
      installPhase = ''
        [ -n "$loader" ] || { echo "the stand-in has no loader of this machine for ${system}" >&2; exit 1; }
        install -D -m 755 "$loader" $out/lib/${platforms.${system}.loaderName}
      '';
    };

  stdenv = stdenvFor system;

  python3 = stdenv.mkDerivation {
    pname = "python3";
    version = facts.pythonVersion;
    dontUnpack = true;
    hostPython = facts.python;
    installPhase = ''
      "$hostPython" -m venv --without-pip $out
    '';
    passthru = {
      pythonVersion = facts.pythonVersion;
      sitePackages = "lib/python${facts.pythonVersion}/site-packages";
      interpreter = "${python3}/bin/python3";
      pkgs = python3Packages;
    };
  };

  # A copy of this machine's installed distribution `name`, and of what it depends on.
  hostPythonPackage =
    name:
    let
      found = facts.packages.${name} or {
        version = "host";
        dependencies = [ ];
      };
    in
    stdenv.mkDerivation {
      pname = "python${facts.pythonVersion}-${name}";
      inherit (found) version;
      dontUnpack = true;
      distribution = found.name or name;
      hostPythonPath = facts.pythonPath;
      nativeBuildInputs = [ python3 ];
      propagatedBuildInputs = map (dependency: python3Packages.${dependency}) found.dependencies;
      installPhase = ''
        PYTHONPATH=$hostPythonPath python3 ${./copy_distribution.py} "$distribution" \
          $out/${python3.sitePackages}
      '';
    };

  buildPythonApplication =
    {
      pyproject ? false,
      build-system ? [ ],
      dependencies ? [ ],
      pythonImportsCheck ? [ ],
      ...
    }@args:
    assert lib.assertMsg pyproject "the stand-in builds Python packages with pyproject = true only";
    let
      # What the programs are given at run time: the package's dependencies, with what those
      # propagate (the build system is not among them).
      runtimeSitePackages = lib.concatStringsSep ":" (
        map (package: "${package}/${python3.sitePackages}") (inputClosure dependencies)
      );
    in
    stdenv.mkDerivation (
      removeAttrs args [
        "pyproject"
        "build-system"
        "dependencies"
      ]
      // {
        nativeBuildInputs = [
          python3
          python3Packages.pip
        ]
        ++ build-system
        ++ (args.nativeBuildInputs or [ ]);
        propagatedBuildInputs = dependencies ++ [ python3 ] ++ (args.propagatedBuildInputs or [ ]);
        pythonImportsCheck = lib.concatStringsSep " " pythonImportsCheck;
        sitePackages = python3.sitePackages;
        inherit runtimeSitePackages;
        buildPhase = ''
          runHook preBuild
          python3 ${./build_wheel.py} dist
          runHook postBuild
        '';
        installPhase = ''
          runHook preInstall
          python3 -m pip install --no-deps --no-index --no-cache-dir --disable-pip-version-check \
            --prefix $out dist/*.whl
          runHook postInstall
        '';
        postFixup = ''
          python3 ${./wrap_python_programs.py} $out/bin "$out/$sitePackages:$runtimeSitePackages"
        ''
        + (args.postFixup or "");
        preDistPhases = "pythonImportsCheckPhase";
        pythonImportsCheckPhase = ''
          if [ -n "$pythonImportsCheck" ]; then
            (cd $out && PYTHONPATH=$out/$sitePackages:$runtimeSitePackages python3 -c \
              'import importlib, sys; [importlib.import_module(name) for name in sys.argv[1:]]' \
              $pythonImportsCheck)
          fi
        '';
      }
    );

  python3Packages =
    lib.genAttrs (lib.unique (builtins.attrNames facts.packages ++ pythonPackageNames)) hostPythonPackage
    // {
      python = python3;
      inherit buildPythonApplication;
    };

  # The Python packages nixld's Nix files name, and pip, with which the stand-in installs.
  pythonPackageNames = [
    "cffi"
    "hypothesis"
    "pip"
    "pyelftools"
    "pytest"
    "setuptools"
  ];

  buildEnv =
    {
      name,
      paths,
      pathsToLink ? [ "/" ],
      extraPrefix ? "",
      ignoreCollisions ? false,
      postBuild ? "",
    }:
    stdenv.mkDerivation {
      inherit name paths;
      # Not postBuild, which the stand-in stdenv's buildPhase would run before $out exists.
      linkedHook = postBuild;
      dontUnpack = true;
      pathsToLink = map (directory: lib.removeSuffix "/" directory) pathsToLink;
      prefix = extraPrefix;
      ignoreCollisions = if ignoreCollisions then "1" else "";
      installPhase = ''
        mkdir -p $out
        for package in $paths; do
          for directory in $pathsToLink; do
            [ -d "$package$directory" ] || continue
            mkdir -p "$out$prefix$directory"
            for entry in "$package$directory"/*; do
              target=$out$prefix$directory/''${entry##*/}
              if [ -e "$target" ] || [ -L "$target" ]; then
                [ -n "$ignoreCollisions" ] || { echo "buildEnv: collision at $target" >&2; exit 1; }
                continue
              fi
              ln -s "$entry" "$target"
            done
          done
        done
        eval "$linkedHook"
      '';
    };

  callPackage =
    function: overrides:
    let
      f = if builtins.isFunction function then function else import function;
    in
    f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // overrides);

  pkgs = {
    inherit
      lib
      stdenv
      callPackage
      python3
      python3Packages
      buildEnv
      ;
    glibc = glibcFor system;
    pkgsi686Linux =
      if system == "x86_64-linux" then
        {
          stdenv.cc.bintools.dynamicLinker = (stdenvFor "i686-linux").cc.bintools.dynamicLinker;
          glibc = glibcFor "i686-linux";
        }
      else
        throw "pkgsi686Linux is only available on x86_64-linux";
  };
in
pkgs
