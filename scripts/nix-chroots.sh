#!/usr/bin/env bash
# Makes the chroots of newer Nix the tests run beside Debian 12's 2.8:
# Debian trixie's nix-bin (2.26) and sid's (2.34), each a debootstrap
# minbase with nix-bin and the OpenSSH client installed in a second step
# (debootstrap's --include does not resolve nix-bin's virtual
# dependencies). They are cached in NIXGATE_CHROOTS (default
# /var/cache/nixgate-test): a later run reuses a chroot whose
# .nixgate-ready marker names the same recipe. Root only; the tests say
# where they look (e2e's nixChroot).
set -euo pipefail
dir=${NIXGATE_CHROOTS:-/var/cache/nixgate-test}
recipe=1
suites=(trixie sid)
if [ "$(id -u)" -ne 0 ]; then
  echo "nix-chroots: needs root (debootstrap, chroot); run as root" >&2
  exit 1
fi
# The Debian mirror of the machine's own apt sources: the URIs of its
# deb822 .sources files and the deb lines of its .list files (not their
# comments, which may name a snapshot), the first that ends in /debian.
mirror=$({
  grep -hE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
  grep -hE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; break }}'
} | grep -E '/debian/?$' | head -n1 || true)
mirror=${mirror:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || {
  echo "nix-chroots: installing debootstrap" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null
}
mkdir -p "$dir"
make_one() {
  local suite=$1 root=$dir/$1 tmp=$dir/$1.tmp
  if [ "$(cat "$root/.nixgate-ready" 2>/dev/null)" = "$recipe" ]; then
    return 0
  fi
  echo "nix-chroots: making $root (Debian $suite with nix-bin) from $mirror" >&2
  umount -R "$tmp/proc" 2>/dev/null || true
  rm -rf "$tmp"
  debootstrap --variant=minbase "$suite" "$tmp" "$mirror" >"$dir/$suite.log" 2>&1 || {
    echo "nix-chroots: debootstrap $suite failed; see $dir/$suite.log" >&2
    return 1
  }
  mount -t proc proc "$tmp/proc"
  # sid's Release file is past its validity date on the mirror.
  if ! { chroot "$tmp" apt-get -o Acquire::Check-Valid-Until=false update -q &&
    DEBIAN_FRONTEND=noninteractive chroot "$tmp" apt-get install -y -q --no-install-recommends nix-bin openssh-client; } >>"$dir/$suite.log" 2>&1; then
    umount "$tmp/proc"
    echo "nix-chroots: installing nix-bin in $suite failed; see $dir/$suite.log" >&2
    return 1
  fi
  chroot "$tmp" apt-get clean
  umount "$tmp/proc"
  echo "$recipe" >"$tmp/.nixgate-ready"
  rm -rf "$root"
  mv "$tmp" "$root"
}
pids=()
for s in "${suites[@]}"; do
  make_one "$s" &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
