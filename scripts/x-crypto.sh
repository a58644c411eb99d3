#!/usr/bin/env bash
# Makes third_party/x-crypto, the copy of golang.org/x/crypto that go.mod's
# replace points at: the version in third_party/x-crypto/VERSION (or the
# one given), from the Go module proxy, cut to the packages
# golang.org/x/crypto/ssh is built from (no tests), with
# patches/x-crypto/*.patch applied. Why the copy exists is in
# docs/development.md ("The x/crypto patch").
#
#   scripts/x-crypto.sh            remake the copy from VERSION
#   scripts/x-crypto.sh v0.60.0    move the copy to another x/crypto version
#   scripts/x-crypto.sh --check    fail unless the copy is exactly that, then
#                                  run x/crypto's own tests of ssh/... (the
#                                  packages the patches touch and those
#                                  built on them) on the patched code
#                                  (make test runs this)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=third_party/x-crypto
check=
case "${1:-}" in
--check) check=1; version=$(cat "$dest/VERSION") ;;
"") version=$(cat "$dest/VERSION") ;;
*) version=$1 ;;
esac

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
# x/crypto fresh from the module proxy into a module cache of our own,
# checked against the checksum database by go, and against the sum
# patches/x-crypto/UPSTREAM pins for its version (a cache elsewhere could
# have been changed after it was checked).
info=$(cd "$work" && GOMODCACHE="$work/modcache" GOFLAGS=-mod=mod go mod download -json "golang.org/x/crypto@$version")
src=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
sum=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p')
[ -d "$src" ] && [ -n "$sum" ] || { echo "x-crypto.sh: golang.org/x/crypto@$version did not download: $info" >&2; exit 1; }
pinned=$(sed -n "s/^golang.org\/x\/crypto $version //p" patches/x-crypto/UPSTREAM)
if [ -n "$pinned" ] && [ "$pinned" != "$sum" ]; then
	echo "x-crypto.sh: golang.org/x/crypto@$version downloaded with sum $sum, but patches/x-crypto/UPSTREAM pins $pinned" >&2
	exit 1
fi
if [ -z "$pinned" ] && [ -n "$check" ]; then
	echo "x-crypto.sh: patches/x-crypto/UPSTREAM pins no sum for golang.org/x/crypto@$version (run scripts/x-crypto.sh $version)" >&2
	exit 1
fi
# go.mod must build with the copy, of this version.
grep -q "^replace golang.org/x/crypto => ./$dest\$" go.mod &&
	grep -Eq "^[[:space:]]*golang.org/x/crypto $version\$" go.mod ||
	[ -z "$check" ] || { echo "x-crypto.sh: go.mod must require golang.org/x/crypto $version and replace it with ./$dest" >&2; exit 1; }

# patched DIR PACKAGES... copies the packages' directories (their files,
# not their subdirectories; testdata whole) and the module's files into
# DIR and applies the patches.
patched() {
	local out=$1 p patch
	shift
	mkdir -p "$out"
	cp "$src/go.mod" "$src/go.sum" "$src/LICENSE" "$src/PATENTS" "$out/"
	for p in "$@"; do
		mkdir -p "$out/$p"
		find "$src/$p" -maxdepth 1 -type f -exec cp {} "$out/$p/" \;
		[ ! -d "$src/$p/testdata" ] || [ -e "$out/$p/testdata" ] || cp -r "$src/$p/testdata" "$out/$p/"
	done
	chmod -R u+w "$out"
	shopt -s nullglob
	for patch in "$PWD"/patches/x-crypto/*.patch; do
		(cd "$out" && git apply -p1 "$patch") || {
			echo "x-crypto.sh: $patch does not apply to golang.org/x/crypto@$version; re-do it by hand (see docs/development.md)" >&2
			exit 1
		}
	done
	echo "$version" >"$out/VERSION"
}

# packages ARGS... lists the x/crypto packages go list -deps ARGS names.
packages() {
	(cd "$src" && GOFLAGS=-mod=mod go list -deps "$@") |
		sed -n 's|^golang.org/x/crypto/\([^ ]*\).*|\1|p' | grep -v -e '\.test$' -e '_test$' | sort -u
}

# What nixgate builds: ssh and what it imports, without test files.
patched "$work/copy" $(packages ./ssh)
find "$work/copy" \( -name '*_test.go' -o -name testdata \) -prune -exec rm -rf {} +

if [ -z "$check" ]; then
	rm -rf "$dest"
	mkdir -p "$(dirname "$dest")"
	cp -r "$work/copy" "$dest"
	echo "golang.org/x/crypto $version $sum" >patches/x-crypto/UPSTREAM
	echo "x-crypto.sh: made $dest from golang.org/x/crypto@$version ($sum)"
	exit 0
fi

if ! diff -r "$work/copy" "$dest" >"$work/diff"; then
	echo "x-crypto.sh: $dest is not golang.org/x/crypto@$version with patches/x-crypto applied (run scripts/x-crypto.sh):" >&2
	head -40 "$work/diff" >&2
	exit 1
fi
echo "x-crypto.sh: $dest is golang.org/x/crypto@$version with patches/x-crypto applied; running its tests"
# The same code with x/crypto's tests of ssh/... (ssh/test's tests that
# need an sshd of their own skip as root). Not under the race detector,
# which makes them take five times as long: the end-to-end tests run
# nixgate built with it, on this code, against OpenSSH and real Nix.
patched "$work/tested" $(packages -test ./ssh ./ssh/test)
cd "$work/tested"
GOFLAGS=-mod=mod go test -count=1 ./ssh/...
