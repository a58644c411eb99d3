#!/usr/bin/env bash
# Runs nixgate in exec mode behind a real OpenSSH sshd on 127.0.0.1, with
# everything it needs generated under .state/demo: a build account
# (nixgate-demo) with a read-only home, a client key, a host key, a
# nixgate.toml with an embedded default, and a builder store of its own.
# It prints how to use the builder from Nix, then runs sshd in the
# foreground until Ctrl-C. Needs root (it creates the account and runs
# sshd). DEMO_PORT sets the port (default 2222).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run-exec-demo: needs root (it creates the nixgate-demo account and runs sshd)" >&2; exit 1; }
port=${DEMO_PORT:-2222}
user=nixgate-demo
state=$PWD/.state/demo
home=$state/home

mkdir -p "$state"
chmod 755 "$PWD/.state" "$state"
install -m 755 bin/nixgate "$state/nixgate"

if ! id "$user" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir "$home" --shell /bin/sh --user-group "$user"
  usermod -p '*' "$user"   # sshd with UsePAM no refuses a locked account
fi
[ -f "$state/client_key" ] || ssh-keygen -q -t ed25519 -N '' -C nixgate-demo-client -f "$state/client_key"
[ -f "$state/host_key" ] || ssh-keygen -q -t ed25519 -N '' -C nixgate-demo-host -f "$state/host_key"
mkdir -p "$state/store" "$state/log"
chown "$user:" "$state/store" "$state/log"

cat > "$state/nixgate.toml" <<TOML
# nixgate demo configuration, written by scripts/run-exec-demo.sh.
user = "$user"

[nix]
store = "local?root=$state/store"
env = { NIX_CONFIG = "substituters =" }

[log]
file = "$state/log/exec.log"

[[keys]]
name = "demo"
role = "build"
public_key = "$(cat "$state/client_key.pub")"
TOML
chmod 644 "$state/nixgate.toml"

# The account's home: authorized_keys forcing nixgate, then read-only.
if [ -d "$home" ]; then chmod -R u+w "$home"; fi
mkdir -p "$home/.ssh"
echo "restrict,command=\"$state/nixgate exec --config $state/nixgate.toml --key demo\" $(cat "$state/client_key.pub")" > "$home/.ssh/authorized_keys"
chown -R "$user:" "$home"
chmod -R a-w "$home"

cat > "$state/sshd_config" <<CONF
ListenAddress 127.0.0.1:$port
HostKey $state/host_key
PidFile none
AuthorizedKeysFile .ssh/authorized_keys
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers $user
CONF

cat > "$state/ssh_config" <<CONF
Host nixgate-demo
  HostName 127.0.0.1
  Port $port
  User $user
  IdentityFile $state/client_key
  IdentitiesOnly yes
  HostKeyAlias nixgate-demo
  UserKnownHostsFile $state/known_hosts
  StrictHostKeyChecking yes
CONF
echo "nixgate-demo $(cat "$state/host_key.pub")" > "$state/known_hosts"

mkdir -p /run/sshd
cat <<MSG
nixgate exec mode is serving on 127.0.0.1:$port as $user (log: $state/log/exec.log).
From another shell, as root:
  export NIX_SSHOPTS="-F $state/ssh_config"
  nix --extra-experimental-features nix-command store ping --store ssh://nixgate-demo
  nix --extra-experimental-features nix-command store ping --store ssh-ng://nixgate-demo
  ssh -F $state/ssh_config nixgate-demo            # a person: refused with a hint
  ssh -F $state/ssh_config nixgate-demo id         # any other command: refused
Ctrl-C stops it.
MSG
exec /usr/sbin/sshd -D -e -f "$state/sshd_config"
