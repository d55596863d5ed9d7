# nixld without flakes: `nix-build` builds nixld, `nix-build -A shim` its shim alone (laid out as
# nixpkgs' nix-ld package is), both with the nixpkgs of NIX_PATH unless `pkgs` is given. The NixOS
# module is nix/module.nix (`imports = [ "${nixld-source}/nix/module.nix" ];`).
{
  pkgs ? import <nixpkgs> { },
}:

pkgs.callPackage ./package.nix { }
