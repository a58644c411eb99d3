#!/usr/bin/env bash
# Installs what the tests need from Debian: Nix (with Debian's multi-user
# setup), the OpenSSH server and
# client, a static busybox for the remote-build test, systemd's
# systemd-analyze and systemd-socket-activate, script(1), setpriv(1),
# PRoot and bubblewrap for the sandbox tests, tmux to drive a terminal,
# ssh-audit, and debootstrap with the chroots of Nix 2.26 and 2.34. As
# root it runs
# apt-get; otherwise it says what is missing. Under CI a missing package
# is an error.
set -euo pipefail
need=()
command -v nix-store >/dev/null || need+=(nix-bin)
# Debian's multi-user setup: /etc/nix/nix.conf (sandbox = false), the
# nix-users group and the daemon's socket directory, which the tests of a
# builder with the machine's daemon store use.
{ [ -e /etc/nix/nix.conf ] && getent group nix-users >/dev/null; } || need+=(nix-setup-systemd)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v systemd-analyze >/dev/null && command -v systemd-socket-activate >/dev/null || need+=(systemd)
command -v script >/dev/null || need+=(bsdutils)
command -v setpriv >/dev/null || need+=(util-linux)
command -v proot >/dev/null || need+=(proot)
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v tmux >/dev/null || need+=(tmux)
command -v ssh-audit >/dev/null || need+=(ssh-audit)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -eq 0 ]; then
  :
elif [ "$(id -u)" -eq 0 ]; then
  echo "deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
else
  echo "deps: missing ${need[*]}: run as root, or: sudo apt-get install ${need[*]}" >&2
  [ -z "${CI:-}" ] || exit 1
fi
# Newer Nix beside Debian 12's 2.8: trixie's 2.26 and sid's 2.34 in
# chroots, made once and cached (scripts/nix-chroots.sh).
if [ "$(id -u)" -eq 0 ]; then
  "$(dirname "$0")/nix-chroots.sh"
else
  echo "deps: the chroots of Nix 2.26 and 2.34 need root: sudo scripts/nix-chroots.sh" >&2
  [ -z "${CI:-}" ] || exit 1
fi
