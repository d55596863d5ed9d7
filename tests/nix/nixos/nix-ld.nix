# Stand-in for nixpkgs' nixos/modules/programs/nix-ld.nix: with programs.nix-ld.enable, the
# package's libexec/nix-ld is the interpreter (environment.ldso); the libraries, and ld.so
# linked to the system's loader, are put under /run/current-system/sw/share/nix-ld/lib, which
# NIX_LD and NIX_LD_LIBRARY_PATH name. nixpkgs' module also lists default libraries; here the
# list is empty unless a configuration gives one.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.programs.nix-ld;
  libraries = pkgs.buildEnv {
    name = "ld-library-path";
    pathsToLink = [ "/lib" ];
    paths = map lib.getLib cfg.libraries;
    extraPrefix = "/share/nix-ld";
    ignoreCollisions = true;
    postBuild = ''
      ln -s ${pkgs.stdenv.cc.bintools.dynamicLinker} $out/share/nix-ld/lib/ld.so
    '';
  };
in
{
  options.programs.nix-ld = {
    enable = lib.mkEnableOption "nix-ld";
    package = lib.mkOption {
      type = lib.types.package;
      default = throw "the stand-in nixpkgs has no nix-ld package: set programs.nix-ld.package";
    };
    libraries = lib.mkOption {
      type = lib.types.listOf lib.types.package;
      default = [ ];
    };
  };

  config = lib.mkIf cfg.enable {
    environment.ldso = "${cfg.package}/libexec/nix-ld";
    environment.systemPackages = [ libraries ];
    environment.pathsToLink = [ "/share/nix-ld" ];
    environment.sessionVariables = {
      NIX_LD = "/run/current-system/sw/share/nix-ld/lib/ld.so";
      NIX_LD_LIBRARY_PATH = "/run/current-system/sw/share/nix-ld/lib";
    };
  };
}
