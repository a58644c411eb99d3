#!/usr/bin/env bash
# Issue 23, "copy at the speed of a local pipe": nix copy --to of one
# 256 MiB path and of 2,000 small paths, over ssh:// and ssh-ng://,
# through the store floor (no remote side), a local pipe (the remote Nix
# run directly, no SSH), OpenSSH's plain forced commands and nixgate
# serve, interleaved in one run; wall time and CPU per process, written
# into docs/BENCHMARKS.md between its throughput markers. Needs root and
# the packages `make deps` installs.
#
#   NIXGATE_BENCH_ROUNDS=N   rounds (7); ROUNDS=N says the same
#   BASE=<git rev>           also measure nixgate as it is at that
#                            revision, labelled with its short hash
#   NIXGATE_BENCH_VARIANTS=label=/path/to/nixgate,…   more nixgate builds
set -euo pipefail
cd "$(dirname "$0")/.."
[ -z "${ROUNDS:-}" ] || export NIXGATE_BENCH_ROUNDS="$ROUNDS"
if [ -n "${BASE:-}" ]; then
  rev=$(git rev-parse --short "$BASE^{commit}")
  base_dir=$(mktemp -d)
  trap 'rm -rf "$base_dir"' EXIT
  # The revision's tree, out of git: no worktree to register or remove.
  mkdir "$base_dir/src"
  git archive "$rev" | tar -x -C "$base_dir/src"
  (cd "$base_dir/src" && go build -o "$base_dir/nixgate" ./cmd/nixgate)
  chmod 755 "$base_dir" "$base_dir/nixgate"
  export NIXGATE_BENCH_VARIANTS="${NIXGATE_BENCH_VARIANTS:+$NIXGATE_BENCH_VARIANTS,}$rev=$base_dir/nixgate"
  echo "throughput: $rev built as $base_dir/nixgate"
fi
go test -tags bench ./e2e -count=1 -run '^$' -bench '^BenchmarkThroughput$' -benchtime 1x -timeout 120m
