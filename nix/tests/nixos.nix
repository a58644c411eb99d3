# Evaluates nix/module.nix as NixOS would, with nixpkgs' lib and
# declarations of the NixOS options it sets (of the types NixOS gives
# them), for e2e's TestNixOSModule: a JSON of what it made.
#
#   nix-instantiate --eval --strict --json nix/tests/nixos.nix \
#     --arg lib 'import /path/to/nixpkgs-lib/lib' --arg config '{ … }'
{ lib, config ? { }, package ? "/nix/store/00000000000000000000000000000000-nixgate" }:

let
  inherit (lib) mkOption types;

  # TOML as pkgs.formats.toml writes it, for the values nixgate's
  # configuration holds: top-level values, then tables, then arrays of
  # tables. Strings and lists of scalars in JSON form, which TOML reads
  # alike.
  toTOML = attrs:
    let
      scalar = v: builtins.isString v || builtins.isInt v || builtins.isBool v || builtins.isFloat v
        || (builtins.isList v && lib.all (x: !builtins.isAttrs x) v);
      value = v: if builtins.isBool v then lib.boolToString v else builtins.toJSON v;
      isTables = v: builtins.isList v && v != [ ] && lib.all builtins.isAttrs v;
      render = prefix: a:
        let
          names = lib.attrNames a;
          plain = lib.filter (n: scalar a.${n}) names;
          tables = lib.filter (n: builtins.isAttrs a.${n}) names;
          arrays = lib.filter (n: isTables a.${n}) names;
          key = n: builtins.toJSON n;
          path = n: if prefix == "" then key n else "${prefix}.${key n}";
        in
        lib.concatMapStrings (n: "${key n} = ${value a.${n}}\n") plain
        + lib.concatMapStrings (n: "\n[${path n}]\n" + render (path n) a.${n}) tables
        + lib.concatMapStrings (n: lib.concatMapStrings (t: "\n[[${path n}]]\n" + render (path n) t) a.${n}) arrays;
    in
    render "" attrs;

  pkgs = {
    formats.toml = { }: {
      type = types.attrsOf types.anything;
      generate = name: value: builtins.toFile name (toTOML value);
    };
    nixgate = { type = "derivation"; outPath = package; meta.mainProgram = "nixgate"; name = "nixgate"; };
    coreutils = { type = "derivation"; outPath = "/nix/store/00000000000000000000000000000000-coreutils"; name = "coreutils"; };
  };

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
      systemd.services = mkOption {
        type = types.attrsOf (types.submodule {
          options = {
            description = mkOption { type = types.str; default = ""; };
            wantedBy = mkOption { type = types.listOf types.str; default = [ ]; };
            after = mkOption { type = types.listOf types.str; default = [ ]; };
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
  firewall = c.networking.firewall.allowedTCPPorts;
  users = c.users.users;
  groups = lib.attrNames c.users.groups;
  settings = c.nix.settings;
  configFile = if c.environment.etc ? "nixgate/nixgate.toml" then builtins.readFile c.environment.etc."nixgate/nixgate.toml".source else null;
}
