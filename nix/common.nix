# What nixgate's NixOS module (module.nix) and nix-darwin module
# (darwin.nix) share: the options of services.nixgate, and the
# configuration file they make of them.
{ config, lib, pkgs }:

let
  cfg = config.services.nixgate;
  toml = pkgs.formats.toml { };

  keyModule = { name, ... }: {
    options = {
      name = lib.mkOption {
        type = lib.types.str;
        default = name;
        description = "The key's name in logs and on the exec command line.";
      };
      role = lib.mkOption {
        type = lib.types.enum [ "substitute" "build" "shell" ];
        description = "substitute: read-only nix-store --serve; build: --write and nix-daemon --stdio; shell: the operator's login shell.";
      };
      publicKey = lib.mkOption {
        type = lib.types.str;
        example = "ssh-ed25519 AAAAC3Nza… ci@example";
        description = "The client's public key, OpenSSH one-line form.";
      };
      from = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [ ];
        description = "Networks (CIDR) the key may connect from; empty means anywhere.";
      };
      expires = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "2027-01-31";
        description = "When the key stops working (RFC 3339 date or date-time).";
      };
      maxSessions = lib.mkOption {
        type = lib.types.ints.unsigned;
        default = 0;
        description = "Concurrent sessions for this key; 0 means no limit.";
      };
      maxBuilds = lib.mkOption {
        type = lib.types.ints.unsigned;
        default = 0;
        description = "Builds this key may run at once (build keys); 0 means only the builder's own limit.";
      };
      fullTrust = lib.mkOption {
        type = lib.types.bool;
        default = false;
        description = "Pass this key's Nix operations unfiltered (with the build account in trusted-users it is root on the builder).";
      };
      buildTimeout = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "2h";
        description = "The longest a build of this key may run, whatever the client asks; null: the client's.";
      };
      maxSilentTime = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "30m";
        description = "The longest a build of this key may be silent; null: the client's.";
      };
      maxLogSize = lib.mkOption {
        type = lib.types.nullOr lib.types.ints.positive;
        default = null;
        description = "The largest build log of this key, in bytes; null: the client's.";
      };
      buildCores = lib.mkOption {
        type = lib.types.nullOr lib.types.ints.positive;
        default = null;
        description = "The most cores a build of this key may use; null: the client's.";
      };
      maxJobs = lib.mkOption {
        type = lib.types.nullOr lib.types.ints.positive;
        default = null;
        description = "The most builds of one session of this key at once; null: the client's.";
      };
    };
  };

  renderKey = k: {
    inherit (k) name role from;
    public_key = k.publicKey;
    max_sessions = k.maxSessions;
    max_builds = k.maxBuilds;
    full_trust = k.fullTrust;
  } // lib.optionalAttrs (k.expires != null) { inherit (k) expires; }
    // lib.optionalAttrs (k.buildTimeout != null) { build_timeout = k.buildTimeout; }
    // lib.optionalAttrs (k.maxSilentTime != null) { max_silent_time = k.maxSilentTime; }
    // lib.optionalAttrs (k.maxLogSize != null) { max_log_size = k.maxLogSize; }
    // lib.optionalAttrs (k.buildCores != null) { build_cores = k.buildCores; }
    // lib.optionalAttrs (k.maxJobs != null) { max_jobs = k.maxJobs; };

  settings = lib.recursiveUpdate ({
    user = cfg.user;
    listen = cfg.listen;
    state_dir = "/var/lib/nixgate";
    nix = {
      bin_dirs = [ "/run/current-system/sw/bin" "/nix/var/nix/profiles/default/bin" ];
    } // lib.optionalAttrs (cfg.clientSettings != null) { client_settings = cfg.clientSettings; };
    keys = map renderKey (lib.attrValues cfg.keys);
  } // lib.optionalAttrs (cfg.limits != { }) { inherit (cfg) limits; }
    // lib.optionalAttrs (cfg.admission != { }) { inherit (cfg) admission; }
    // lib.optionalAttrs (cfg.metricsListen != null) { metrics.listen = cfg.metricsListen; }
    // lib.optionalAttrs (cfg.logFile != null) { log.file = cfg.logFile; }) cfg.settings;

  configFile = toml.generate "nixgate.toml" settings;

  # The dual-stack default listens on one port twice.
  ports = lib.unique (map (a: lib.toInt (lib.last (lib.splitString ":" a))) cfg.listen);

  # Whether nixgate's store is the Nix daemon's (no [nix] store, or
  # "daemon"): only then does the build account need the daemon's trust.
  daemonStore = (settings.nix.store or "daemon") == "daemon";
in
{
  inherit configFile ports daemonStore;

  options = {
      enable = lib.mkEnableOption "nixgate, the SSH gateway of a Nix remote builder";

      package = lib.mkOption {
        type = lib.types.package;
        default = pkgs.nixgate;
        defaultText = lib.literalExpression "pkgs.nixgate";
        description = "The nixgate package.";
      };

      user = lib.mkOption {
        type = lib.types.str;
        default = "nixremote";
        description = "The account the Nix commands run as; created unless it exists.";
      };

      listen = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [ "0.0.0.0:2222" "[::]:2222" ];
        description = "Addresses to listen on (host:port). Use port 22 only when OpenSSH's sshd is elsewhere.";
      };

      keys = lib.mkOption {
        type = lib.types.attrsOf (lib.types.submodule keyModule);
        default = { };
        example = lib.literalExpression ''
          {
            ci = { role = "build"; publicKey = "ssh-ed25519 AAAA… ci@example"; };
            hydra = { role = "substitute"; publicKey = "ssh-ed25519 AAAA… hydra@example"; };
          }
        '';
        description = "The client keys that may log in, by name.";
      };

      clientSettings = lib.mkOption {
        type = lib.types.nullOr (lib.types.listOf lib.types.str);
        default = null;
        example = [ "max-silent-time" "timeout" ];
        description = "The SetOptions overrides clients may send ([nix] client_settings); null: nixgate's default.";
      };

      limits = lib.mkOption {
        type = lib.types.attrsOf (lib.types.oneOf [ lib.types.int lib.types.str ]);
        default = { };
        example = { max_startups = 32; drain_timeout = "5m"; };
        description = "nixgate.toml's [limits]: connections, sessions and the drain (see docs/configuration.md).";
      };

      admission = lib.mkOption {
        type = lib.types.attrsOf (lib.types.oneOf [ lib.types.int lib.types.str lib.types.bool ]);
        default = { };
        example = { max_builds = 4; build_queue_timeout = "5m"; };
        description = "nixgate.toml's [admission]: build slots and health (see docs/configuration.md).";
      };

      metricsListen = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "unix:/run/nixgate/metrics.sock";
        description = "Where Prometheus metrics are served ([metrics] listen): host:port, or unix:PATH (a socket only nixgate's user may use); null: none.";
      };

      logFile = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        description = "A file for the JSON audit log ([log] file); null: the journal.";
      };

      settings = lib.mkOption {
        type = toml.type;
        default = { };
        example = lib.literalExpression ''{ limits.max_startups = 32; sandbox.mode = "direct"; }'';
        description = "More of nixgate.toml (see docs/configuration.md); merged over what the other options set.";
      };
  };

  assertions = [{
    assertion = cfg.keys != { } || settings ? authorized_keys;
    message = "services.nixgate: no key may log in: add one to services.nixgate.keys (or an authorized_keys file through services.nixgate.settings); nixgate refuses to start with none";
  }];
}
