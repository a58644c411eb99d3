#!/usr/bin/env bash
# Checks the import structure the packages are built on (docs/development.md, Layout):
# cmd on top; gateway and check above sandbox, keys and nixproto; policy
# at the ground. Prints one line per import that breaks it and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
fail=0
# imports PKG: the packages PKG imports (its own, not its tests'), the
# module's with the module path cut off.
imports() { go list -f '{{join .Imports "\n"}}' "./$1" | sed "s#^$mod/##"; }
forbid() { # forbid PKG WHY PATTERN: PKG may import nothing matching PATTERN
	local pkg=$1 why=$2 pattern=$3 bad
	bad=$(imports "$pkg" | grep -E "$pattern" || true)
	for b in $bad; do
		echo "check-imports: $pkg imports $b: $why"
		fail=1
	done
}
ours='^(admission|certauth|check|cmd|config|gateway|keys|keysource|krl|nixproto|policy|sandbox|session|usage)(/|$)'
forbid policy "policy is the ground: it imports nothing of nixgate's" "$ours"
forbid keys "keys imports nothing of nixgate's" "$ours"
forbid krl "krl imports nothing of nixgate's" "$ours"
for p in certauth config keysource sandbox nixproto admission usage session; do
	forbid "$p" "only cmd, gateway and check sit above $p" '^(cmd|gateway|check)(/|$)'
done
forbid check "check is beside gateway, not above it" '^gateway$'
forbid gateway "gateway starts no process: sandbox does" '^(os/exec|github.com/creack/pty)$'
forbid nixproto "nixproto is a stream filter: no ssh, no processes" '^(os/exec|github.com/gliderlabs/ssh|golang.org/x/crypto/ssh)$'
exit $fail
