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

      # services.nixgate for nix-darwin (macOS builders): the launch daemon.
      darwinModules.default = { pkgs, lib, ... }: {
        imports = [ ./nix/darwin.nix ];
        services.nixgate.package = lib.mkDefault (pkgs.callPackage ./nix/package.nix { });
      };
      darwinModules.nixgate = self.darwinModules.default;

      # nix flake check: the modules evaluated as e2e's TestNixOSModule
      # and TestDarwinModule evaluate them (nix/tests), with this flake's
      # nixpkgs' lib. e2e's TestFlakeCheck runs nix flake check --no-build
      # with Nix 2.8, 2.26 and 2.34.
      checks = forAllSystems (pkgs:
        let
          eval = file: import file {
            inherit (nixpkgs) lib;
            config.services.nixgate = {
              enable = true;
              keys.check = { role = "build"; publicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBDXbJ9NkJ+yCDkbWPPEx+8AmJpJYqTOcaw5PbXdu4cJ check"; };
            };
          };
          # The configuration file is made (so its settings type-checked)
          # but not read back, which pure evaluation in Nix 2.8 forbids;
          # its text is TestNixOSModule's to check.
          ok = name: r: pkgs.runCommand name { } (
            assert r.assertions == [ ] && (r.service or r.daemon) != null && r.configSource != null;
            "echo ${builtins.toJSON r.assertions} > $out");
        in
        {
          nixos-module = ok "nixgate-nixos-module" (eval ./nix/tests/nixos.nix);
          darwin-module = ok "nixgate-darwin-module" (eval ./nix/tests/darwin.nix);
        });
    };
}
