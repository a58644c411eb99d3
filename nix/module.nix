# services.nixgate: nixgate as the SSH server of a NixOS remote builder.
{ config, lib, pkgs, ... }:

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

  settings = lib.recursiveUpdate {
    user = cfg.user;
    listen = cfg.listen;
    state_dir = "/var/lib/nixgate";
    nix.bin_dirs = [ "/run/current-system/sw/bin" "/nix/var/nix/profiles/default/bin" ];
    keys = map renderKey (lib.attrValues cfg.keys);
  } cfg.settings;

  configFile = toml.generate "nixgate.toml" settings;

  # The dual-stack default listens on one port twice.
  ports = lib.unique (map (a: lib.toInt (lib.last (lib.splitString ":" a))) cfg.listen);

  # Whether nixgate's store is the Nix daemon's (no [nix] store, or
  # "daemon"): only then does the build account need the daemon's trust.
  daemonStore = (settings.nix.store or "daemon") == "daemon";
in
{
  options.services.nixgate = {
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

    settings = lib.mkOption {
      type = toml.type;
      default = { };
      example = lib.literalExpression ''{ limits.max_startups = 32; sandbox.mode = "direct"; }'';
      description = "More of nixgate.toml (see the README); merged over what the other options set.";
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the listen ports in the firewall.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [{
      assertion = cfg.keys != { } || settings ? authorized_keys;
      message = "services.nixgate: no key may log in: add one to services.nixgate.keys (or an authorized_keys file through services.nixgate.settings); nixgate refuses to start with none";
    }];

    users.users.${cfg.user} = {
      isSystemUser = true;
      group = cfg.user;
      home = "/var/empty";
      shell = "/bin/sh";
    };
    users.groups.${cfg.user} = { };
    # ssh-ng:// builds need the build user trusted by the Nix daemon:
    # added to, never in place of, trusted-users.
    nix.settings.extra-trusted-users = lib.mkIf daemonStore [ cfg.user ];

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall ports;

    environment.etc."nixgate/nixgate.toml".source = configFile;

    systemd.services.nixgate = {
      description = "nixgate, the SSH gateway of a Nix remote builder";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" "nix-daemon.socket" ];
      wants = [ "network.target" ];
      restartTriggers = [ configFile ];
      serviceConfig = {
        Type = "notify";
        ExecStart = "${lib.getExe cfg.package} serve --config /etc/nixgate/nixgate.toml";
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        KillMode = "mixed";
        TimeoutStopSec = "6min";
        Restart = "on-failure";
        RestartSec = "2s";
        StateDirectory = "nixgate";
        StateDirectoryMode = "0700";
        UMask = "0077";
        CapabilityBoundingSet = [ "CAP_NET_BIND_SERVICE" "CAP_SETUID" "CAP_SETGID" "CAP_CHOWN" "CAP_KILL" ];
        NoNewPrivileges = true;
        SecureBits = "noroot-locked";
        ProtectSystem = "strict";
        ReadWritePaths = [ "-/nix" "-/var/lib/nixgate-store" ];
        LogsDirectory = "nixgate";
        ProtectHome = "read-only";
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        RemoveIPC = true;
        PrivateMounts = true;
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "~@clock @cpu-emulation @debug @module @obsolete @raw-io @reboot @swap" ];
        SystemCallErrorNumber = "EPERM";
      };
    };
  };
}
