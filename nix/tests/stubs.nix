# What the module evaluations (nixos.nix, darwin.nix) give the modules in
# place of nixpkgs' packages: pkgs.formats.toml, which writes TOML for the
# values nixgate's configuration holds, and stand-ins of the packages.
{ lib, package }:

let
  inherit (lib) types;

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

in
pkgs
