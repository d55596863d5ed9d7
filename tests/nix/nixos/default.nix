# A stand-in NixOS, for the tests of nixld's module (nix/module.nix): the stand-in module system
# of tests/nix/nixpkgs/lib.nix evaluates `modules` with the stand-ins here for the NixOS modules
# nixld's module meets, written from NixOS's documented behaviour:
#   base.nix     the options they set that belong to NixOS itself
#   ldso.nix     environment.ldso and environment.ldso32 (nixos/modules/config/ldso.nix)
#   stub-ld.nix  NixOS's default interpreters (nixos/modules/config/stub-ld.nix)
#   nix-ld.nix   programs.nix-ld (nixos/modules/programs/nix-ld.nix)
# Its value: the configuration, the messages of the assertions that fail, and `toplevel`, the
# system as far as the tests look at it (NixOS's system.build.toplevel, which refuses to build
# while an assertion fails): sw/, the system's packages linked together as /run/current-system/sw
# has them (environment.pathsToLink, and bin/), and configuration.json, what systemd-tmpfiles
# and the login sessions are given. Building it builds everything these name.
{ pkgs, modules }:

let
  inherit (evaluated) config;
  evaluated = pkgs.lib.evalModules {
    modules = [
      ./base.nix
      ./ldso.nix
      ./stub-ld.nix
      ./nix-ld.nix
    ]
    ++ modules;
    specialArgs = { inherit pkgs; };
  };
  failedAssertions = map (assertion: assertion.message) (
    builtins.filter (assertion: !assertion.assertion) config.assertions
  );
  sw = pkgs.buildEnv {
    name = "system-path";
    paths = config.environment.systemPackages;
    pathsToLink = [ "/bin" ] ++ config.environment.pathsToLink;
  };
in
{
  inherit config failedAssertions;
  toplevel =
    if failedAssertions != [ ] then
      throw "Failed assertions: ${builtins.concatStringsSep "; " failedAssertions}"
    else
      pkgs.stdenv.mkDerivation {
        name = "nixos-system";
        dontUnpack = true;
        inherit sw;
        configuration = builtins.toJSON {
          inherit (config.environment) sessionVariables;
          tmpfilesRules = config.systemd.tmpfiles.rules;
        };
        installPhase = ''
          mkdir -p $out
          ln -s $sw $out/sw
          printf '%s' "$configuration" > $out/configuration.json
        '';
      };
}
