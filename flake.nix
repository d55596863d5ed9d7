{
  description = "Run unpatched, dynamically linked Linux binaries on NixOS, through the real loader";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (
        pkgs:
        let
          nixld = pkgs.callPackage ./package.nix { };
        in
        {
          inherit nixld;
          inherit (nixld) shim;
          default = nixld;
        }
      );

      # Building the packages, and the tests that can run inside the build sandbox.
      checks = forAllSystems (
        pkgs:
        let
          packages = self.packages.${pkgs.stdenv.hostPlatform.system};
        in
        {
          inherit (packages) nixld shim;
          tests = packages.nixld.tests.pytest;
        }
      );

      overlays.default = final: prev: {
        nixld = final.callPackage ./package.nix { };
      };

      # Builds nixld with the system's own nixpkgs (pkgs), as the overlay does.
      nixosModules.default = import ./nix/module.nix;
    };
}
