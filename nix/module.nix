# services.nixgate: nixgate as the SSH server of a NixOS remote builder.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.nixgate;
  common = import ./common.nix { inherit config lib pkgs; };
in
{
  options.services.nixgate = common.options // {
    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the listen ports in the firewall.";
    };
    socketActivation = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Let systemd bind the listen addresses (a nixgate.socket unit) and
        start nixgate at the first connection: nixgate then needs no
        CAP_NET_BIND_SERVICE for port 22, and the addresses are systemd's
        (each bound on its own, IPv6 ones IPv6-only, as nixgate binds them).
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = common.assertions;

    users.users.${cfg.user} = {
      isSystemUser = true;
      group = cfg.user;
      home = "/var/empty";
      shell = "/bin/sh";
    };
    users.groups.${cfg.user} = { };
    # ssh-ng:// builds need the build user trusted by the Nix daemon:
    # added to, never in place of, trusted-users.
    nix.settings.extra-trusted-users = lib.mkIf common.daemonStore [ cfg.user ];

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall common.ports;

    environment.etc."nixgate/nixgate.toml".source = common.configFile;

    systemd.sockets.nixgate = lib.mkIf cfg.socketActivation {
      description = "nixgate, the SSH gateway of a Nix remote builder: its listening sockets";
      wantedBy = [ "sockets.target" ];
      listenStreams = cfg.listen;
      socketConfig = {
        BindIPv6Only = "ipv6-only";
        Accept = false;
      };
    };

    systemd.services.nixgate = {
      description = "nixgate, the SSH gateway of a Nix remote builder";
      # Under socket activation the socket starts it.
      wantedBy = lib.optionals (!cfg.socketActivation) [ "multi-user.target" ];
      requires = lib.optionals cfg.socketActivation [ "nixgate.socket" ];
      after = [ "network.target" "nix-daemon.socket" ] ++ lib.optionals cfg.socketActivation [ "nixgate.socket" ];
      wants = [ "network.target" ];
      restartTriggers = [ common.configFile ];
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
        # Binding a port below 1024 is systemd's under socket activation.
        CapabilityBoundingSet = lib.optionals (!cfg.socketActivation) [ "CAP_NET_BIND_SERVICE" ] ++ [ "CAP_SETUID" "CAP_SETGID" "CAP_CHOWN" "CAP_KILL" ];
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
