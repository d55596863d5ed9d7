# The stand-in nixpkgs (default.nix) as a flake input: nixpkgs' flake outputs `lib` and
# `legacyPackages.<system>`, which is what nixld's flake.nix uses. As a flake it is evaluated
# purely, without this machine's `host` facts: enough to evaluate (nix flake check --no-build,
# nix flake show), not to build.
{
  outputs =
    { self }:
    let
      lib = import ./lib.nix;
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs [
        "x86_64-linux"
        "aarch64-linux"
      ] (system: import ./. { inherit system; });
    };
}
