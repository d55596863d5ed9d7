# A stand-in NixOS, for the tests of nixld's module (nix/module.nix): the stand-in module system
# of tests/nix/nixpkgs/lib.nix evaluates `modules` with the stand-ins here for the NixOS modules
# nixld's module meets, written from NixOS's documented behaviour:
#   base.nix     the options they set that belong to NixOS itself
#   ldso.nix     environment.ldso and environment.ldso32 (nixos/modules/config/ldso.nix)
#   stub-ld.nix  NixOS's default interpreters (nixos/modules/config/stub-ld.nix)
#   nix-ld.nix   programs.nix-ld (nixos/modules/programs/nix-ld.nix)
# Its value: the configuration, and the messages of the assertions that fail (NixOS refuses to
# build a system with any).
{ pkgs, modules }:

let
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
in
{
  inherit (evaluated) config;
  failedAssertions = map (assertion: assertion.message) (
    builtins.filter (assertion: !assertion.assertion) evaluated.config.assertions
  );
}
