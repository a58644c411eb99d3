# services.nixgate for nix-darwin: nixgate serve as a macOS launch daemon,
# as launchd/org.nixgate.serve.plist has it, run by root; the Nix
# commands run as the build account, never as root. Only sandbox.mode =
# "direct" works on macOS.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.nixgate;
  common = import ./common.nix { inherit config lib pkgs; };
in
{
  options.services.nixgate = common.options // {
    uid = lib.mkOption {
      type = lib.types.int;
      default = 532;
      description = "The build account's uid: nix-darwin creates only accounts whose uid it is given.";
    };
    gid = lib.mkOption {
      type = lib.types.int;
      default = 532;
      description = "The build account's group's gid.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = common.assertions ++ [{
      assertion = (cfg.settings.sandbox.mode or "direct") == "direct";
      message = "services.nixgate.settings.sandbox.mode: only \"direct\" works on macOS (the sandbox modes need Linux)";
    }];

    users.users.${cfg.user} = {
      uid = cfg.uid;
      gid = cfg.gid;
      home = "/var/empty";
      shell = "/bin/sh";
      isHidden = true;
      description = "nixgate's build account";
    };
    users.groups.${cfg.user}.gid = cfg.gid;
    users.knownUsers = [ cfg.user ];
    users.knownGroups = [ cfg.user ];

    # ssh-ng:// builds need the build user trusted by the Nix daemon:
    # added to, never in place of, trusted-users.
    nix.settings.extra-trusted-users = lib.mkIf common.daemonStore [ cfg.user ];

    environment.etc."nixgate/nixgate.toml".source = common.configFile;

    launchd.daemons.nixgate.serviceConfig = {
      Label = "org.nixgate.serve";
      ProgramArguments = [ (lib.getExe cfg.package) "serve" "--config" "/etc/nixgate/nixgate.toml" ];
      RunAtLoad = true;
      # Restart it when it fails, not when it was stopped.
      KeepAlive.SuccessfulExit = false;
      ThrottleInterval = 2;
      # SIGTERM lets running sessions drain for limits.drain_timeout;
      # launchd sends SIGKILL after this.
      ExitTimeOut = 360;
      Umask = 63;
      StandardErrorPath = "/var/log/nixgate.log";
      StandardOutPath = "/dev/null";
      EnvironmentVariables.PATH = "/nix/var/nix/profiles/default/bin:/run/current-system/sw/bin:/usr/local/bin:/usr/bin:/bin";
    };
  };
}
