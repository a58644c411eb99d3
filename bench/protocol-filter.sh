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
. bench/baseline.sh
go test -tags bench ./e2e -count=1 -run '^$' -bench '^BenchmarkProtocolFilter$' -benchtime 1x -timeout 30m
go test ./nixproto -count=1 -run '^$' -bench '^(BenchmarkFilter|BenchmarkPlainCopy)$' -benchtime 5x
