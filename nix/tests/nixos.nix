# Evaluates nix/module.nix as NixOS would, with nixpkgs' lib and
# declarations of the NixOS options it sets (of the types NixOS gives
# them), for e2e's TestNixOSModule: a JSON of what it made.
#
#   nix-instantiate --eval --strict --json nix/tests/nixos.nix \
#     --arg lib 'import /path/to/nixpkgs-lib/lib' --arg config '{ … }'
{ lib, config ? { }, package ? "/nix/store/00000000000000000000000000000000-nixgate" }:

let
  inherit (lib) mkOption types;

  pkgs = import ./stubs.nix { inherit lib package; };

  # The NixOS options the module sets, as NixOS declares them (in the
  # parts the module uses).
  nixos = {
    options = {
      assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
      users.users = mkOption {
        type = types.attrsOf (types.submodule {
          options = {
            isSystemUser = mkOption { type = types.bool; default = false; };
            group = mkOption { type = types.str; default = ""; };
            home = mkOption { type = types.str; default = "/var/empty"; };
            shell = mkOption { type = types.nullOr (types.either types.str types.package); default = null; };
          };
        });
        default = { };
      };
      users.groups = mkOption { type = types.attrsOf (types.submodule { options = { }; }); default = { }; };
      networking.firewall.allowedTCPPorts = mkOption { type = types.listOf types.port; default = [ ]; };
      environment.etc = mkOption {
        type = types.attrsOf (types.submodule {
          options.source = mkOption { type = types.path; };
        });
        default = { };
      };
      nix.settings = mkOption {
        type = types.submodule {
          freeformType = types.attrsOf types.anything;
          options.trusted-users = mkOption { type = types.listOf types.str; default = [ "root" ]; };
        };
        default = { };
      };
      systemd.sockets = mkOption {
        type = types.attrsOf (types.submodule {
          options = {
            description = mkOption { type = types.str; default = ""; };
            wantedBy = mkOption { type = types.listOf types.str; default = [ ]; };
            listenStreams = mkOption { type = types.listOf types.str; default = [ ]; };
            socketConfig = mkOption { type = types.attrsOf types.anything; default = { }; };
          };
        });
        default = { };
      };
      systemd.services = mkOption {
        type = types.attrsOf (types.submodule {
          options = {
            description = mkOption { type = types.str; default = ""; };
            wantedBy = mkOption { type = types.listOf types.str; default = [ ]; };
            after = mkOption { type = types.listOf types.str; default = [ ]; };
            requires = mkOption { type = types.listOf types.str; default = [ ]; };
            wants = mkOption { type = types.listOf types.str; default = [ ]; };
            restartTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; };
            serviceConfig = mkOption { type = types.attrsOf types.anything; default = { }; };
          };
        });
        default = { };
      };
    };
  };

  evaluated = lib.evalModules {
    modules = [ nixos ../module.nix config ];
    specialArgs = { inherit pkgs; };
  };
  c = evaluated.config;
  failed = lib.filter (a: !a.assertion) c.assertions;
in
{
  assertions = map (a: a.message) failed;
  service = c.systemd.services.nixgate or null;
  socket = c.systemd.sockets.nixgate or null;
  firewall = c.networking.firewall.allowedTCPPorts;
  users = c.users.users;
  groups = lib.attrNames c.users.groups;
  settings = c.nix.settings;
  # The file's store path (made, so its settings checked, when forced)
  # and its text.
  configSource = c.environment.etc."nixgate/nixgate.toml".source or null;
  configFile = if c.environment.etc ? "nixgate/nixgate.toml" then builtins.readFile c.environment.etc."nixgate/nixgate.toml".source else null;
}
