# Stand-in for NixOS's nixos/modules/config/ldso.nix: environment.ldso and environment.ldso32
# name the files systemd-tmpfiles links at the FHS interpreter paths (ldso32 on x86_64 only, at
# /lib/ld-linux.so.2); where one is null, whatever is at its path is removed.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  platform = pkgs.stdenv.hostPlatform;
  ldsoPath = "/${platform.libDir}/${baseNameOf (builtins.unsafeDiscardStringContext pkgs.stdenv.cc.bintools.dynamicLinker)}";
  ldso32Path = "/lib/ld-linux.so.2";
  rules =
    path: file:
    if file == null then
      [ "r ${path} - - - - -" ]
    else
      [
        "d ${dirOf path} 0755 root root - -"
        "L+ ${path} - - - - ${file}"
      ];
in
{
  options.environment = {
    ldso = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
    };
    ldso32 = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
    };
  };

  config = {
    assertions = [
      {
        assertion = config.environment.ldso32 == null || platform.isx86_64;
        message = "Option environment.ldso32 currently only works on x86_64.";
      }
    ];
    systemd.tmpfiles.rules =
      rules ldsoPath config.environment.ldso
      ++ lib.optionals platform.isx86_64 (rules ldso32Path config.environment.ldso32);
  };
}
