{
  description = "nixgate: the SSH front door of a Nix remote builder";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        nixgate = pkgs.callPackage ./nix/package.nix { };
        default = nixgate;
      });

      overlays.default = final: prev: {
        nixgate = final.callPackage ./nix/package.nix { };
      };

      # services.nixgate; the package defaults to this flake's.
      nixosModules.default = { pkgs, lib, ... }: {
        imports = [ ./nix/module.nix ];
        services.nixgate.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.nixgate;
      };
      nixosModules.nixgate = self.nixosModules.default;
    };
}
