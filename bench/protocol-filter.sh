#!/usr/bin/env bash
# What the Nix protocol filter costs: 256 MiB nix copy --to and --from over
# ssh-ng://, in the same run, through
#   - OpenSSH's plain forced nix-daemon --stdio (no nixgate),
#   - nixgate exec as it was before the filter (built here from git),
#   - nixgate exec and nixgate serve with the filter;
# then the filter alone against a plain copy of the same stream (Go
# benchmarks). Needs root and the packages `make deps` installs; LONG=1
# for more rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -z "${LONG:-}" ] || export NIXGATE_BENCH_LONG=1
# The last commit before the filter: the parent of the one that added it.
first=$(git rev-list --reverse HEAD -- nixproto/filter.go | head -1)
base_dir=$(mktemp -d)
trap 'git worktree remove --force "$base_dir/src" >/dev/null 2>&1 || true; rm -rf "$base_dir"' EXIT
git worktree add --detach "$base_dir/src" "$first^" >/dev/null 2>&1
(cd "$base_dir/src" && go build -o "$base_dir/nixgate" ./cmd/nixgate)
chmod 755 "$base_dir" && chmod 755 "$base_dir/nixgate"
export NIXGATE_BENCH_BASELINE="$base_dir/nixgate"
go test ./e2e -count=1 -run '^$' -bench '^BenchmarkProtocolFilter$' -benchtime 1x -timeout 30m
go test ./nixproto -count=1 -run '^$' -bench '^(BenchmarkFilter|BenchmarkPlainCopy)$' -benchtime 5x
