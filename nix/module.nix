# nixld on NixOS: `programs.nixld.enable = true;` switches on nixpkgs' nix-ld module with nixld's
# shim as its program interpreter (programs.nix-ld.package), puts the i686 shim at the 32-bit
# interpreter path on x86_64 (environment.ldso32) and installs the nixld command.
# programs.nix-ld.libraries stays the one place to list the libraries foreign programs find.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.programs.nixld;
  onX86_64 = pkgs.stdenv.hostPlatform.isx86_64;
in
{
  options.programs.nixld = {
    enable = lib.mkEnableOption "nixld, with its shim as nix-ld's program interpreter";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.callPackage ../package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage \"\${nixld}/package.nix\" { }";
      description = ''
        The nixld package, built with this system's nixpkgs by default. Its `shim` attribute
        becomes `programs.nix-ld.package`.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    programs.nix-ld.enable = true;
    programs.nix-ld.package = cfg.package.shim;

    environment.ldso32 = lib.mkIf onX86_64 "${cfg.package.shim}/libexec/nix-ld32";
    # The i686 shim reads NIX_LD_i686_linux before NIX_LD, which names the 64-bit loader (a
    # loader it refuses for a 32-bit program); nix-ld's libraries are 64-bit too, and the i686
    # loader finds its own C library without them.
    environment.sessionVariables = lib.mkIf onX86_64 {
      NIX_LD_i686_linux = lib.mkDefault pkgs.pkgsi686Linux.stdenv.cc.bintools.dynamicLinker;
    };

    environment.systemPackages = [ cfg.package ];
  };
}
