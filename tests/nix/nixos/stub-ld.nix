# Stand-in for NixOS's nixos/modules/config/stub-ld.nix, on by default: a program at each FHS
# interpreter path that explains why foreign programs cannot start, set with mkDefault so that
# nix-ld (and nixld) replace it. Its programs are not built here: the stand-in names them only.
{ lib, pkgs, ... }:

{
  environment.ldso = lib.mkDefault "${builtins.storeDir}/00000000000000000000000000000000-stub-ld/bin/stub-ld";
  environment.ldso32 = lib.mkIf pkgs.stdenv.hostPlatform.isx86_64 (
    lib.mkDefault "${builtins.storeDir}/00000000000000000000000000000000-stub-ld-i686/bin/stub-ld"
  );
}
