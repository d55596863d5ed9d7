# nixld's shim, laid out as nixpkgs' nix-ld package is, so that it can be programs.nix-ld.package:
# libexec/nix-ld is the program interpreter, nix-support/ldpath the interpreter path it stands
# for, lib/tmpfiles.d/nix-ld.conf the line that links one to the other. On x86_64 the shim for
# 32-bit programs is libexec/nix-ld32, for environment.ldso32.
#
# Called by package.nix, which passes the version it reads from nixld/__init__.py.
{
  lib,
  stdenv,
  python3,
  version,
}:

let
  system = stdenv.hostPlatform.system;
  withI686 = stdenv.hostPlatform.isx86_64;
in
stdenv.mkDerivation {
  pname = "nixld-shim";
  inherit version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../nixld/shim
      ../nixld/_shim_build.py
      ../nixld/elf.py
      ../nixld/__init__.py
      ./build_shim.py
    ];
  };

  # Python runs nixld/_shim_build.py, which holds the compiler flags setup.py uses too; the
  # shims it links are static and need nothing, so no Python is in this package's closure.
  nativeBuildInputs = [ python3 ];

  # The flags are _shim_build.py's, for freestanding code that the kernel maps before any loader
  # exists: none of the compiler wrapper's hardening flags may be added to them (a stack
  # protector's canary, for one, is set up by a libc the shim does not have).
  hardeningDisable = [ "all" ];

  buildPhase = ''
    runHook preBuild
    python3 nix/build_shim.py "$CC" ${system} nix-ld
  ''
  # gcc -m32 (or clang) builds the i686 shim with no 32-bit libc: the shim uses none.
  + lib.optionalString withI686 ''
    python3 nix/build_shim.py "$CC" i686-linux nix-ld32
  ''
  + ''
    runHook postBuild
  '';

  installPhase = ''
    runHook preInstall
    install -D -m 755 nix-ld $out/libexec/nix-ld
  ''
  + lib.optionalString withI686 ''
    install -D -m 755 nix-ld32 $out/libexec/nix-ld32
  ''
  + ''
    # As nix-ld computes it: where programs built elsewhere look for this system's loader.
    ldpath=/${stdenv.hostPlatform.libDir}/$(basename ${stdenv.cc.bintools.dynamicLinker})
    mkdir -p $out/nix-support $out/lib/tmpfiles.d
    echo "$ldpath" > $out/nix-support/ldpath
    echo "L+ $ldpath - - - - $out/libexec/nix-ld" > $out/lib/tmpfiles.d/nix-ld.conf
    runHook postInstall
  '';

  # The shims are what _shim_build.py linked and checked: no debug information to strip, no
  # run path to shrink, and nothing but the kernel reads them.
  dontStrip = true;
  dontPatchELF = true;

  meta = {
    description = "nixld's program interpreter, a drop-in for nix-ld's (programs.nix-ld.package)";
    license = lib.licenses.mit;
    platforms = [
      "x86_64-linux"
      "aarch64-linux"
    ];
  };
}
