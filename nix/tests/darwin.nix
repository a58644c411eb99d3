# Evaluates nix/darwin.nix as nix-darwin would, with nixpkgs' lib and
# declarations of the nix-darwin options it sets (of the types nix-darwin
# gives them), for e2e's TestDarwinModule: a JSON of what it made.
{ lib, config ? { }, package ? "/nix/store/00000000000000000000000000000000-nixgate" }:

let
  inherit (lib) mkOption types;
  pkgs = import ./stubs.nix { inherit lib package; };

  darwin = {
    options = {
      assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
      users.users = mkOption {
        type = types.attrsOf (types.submodule {
          options = {
            uid = mkOption { type = types.nullOr types.int; default = null; };
            gid = mkOption { type = types.int; default = 20; };
            home = mkOption { type = types.nullOr types.path; default = null; };
            shell = mkOption { type = types.nullOr (types.either types.shellPackage types.path); default = null; };
            isHidden = mkOption { type = types.bool; default = false; };
            description = mkOption { type = types.nullOr types.str; default = null; };
          };
        });
        default = { };
      };
      users.groups = mkOption {
        type = types.attrsOf (types.submodule { options.gid = mkOption { type = types.int; }; });
        default = { };
      };
      users.knownUsers = mkOption { type = types.listOf types.str; default = [ ]; };
      users.knownGroups = mkOption { type = types.listOf types.str; default = [ ]; };
      environment.etc = mkOption {
        type = types.attrsOf (types.submodule { options.source = mkOption { type = types.path; }; });
        default = { };
      };
      nix.settings = mkOption {
        type = types.submodule {
          freeformType = types.attrsOf types.anything;
          options.trusted-users = mkOption { type = types.listOf types.str; default = [ "root" ]; };
        };
        default = { };
      };
      launchd.daemons = mkOption {
        type = types.attrsOf (types.submodule {
          options.serviceConfig = mkOption { type = types.attrsOf types.anything; default = { }; };
        });
        default = { };
      };
    };
  };

  evaluated = lib.evalModules {
    modules = [ darwin ../darwin.nix config ];
    specialArgs = { inherit pkgs; };
  };
  c = evaluated.config;
in
{
  assertions = map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
  daemon = (c.launchd.daemons.nixgate or { serviceConfig = null; }).serviceConfig;
  users = c.users.users;
  knownUsers = c.users.knownUsers;
  settings = c.nix.settings;
  # The file's store path (made, so its settings checked, when forced)
  # and its text.
  configSource = c.environment.etc."nixgate/nixgate.toml".source or null;
  configFile = if c.environment.etc ? "nixgate/nixgate.toml" then builtins.readFile c.environment.etc."nixgate/nixgate.toml".source else null;
}
