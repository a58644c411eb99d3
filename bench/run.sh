#!/usr/bin/env bash
# The benchmark command: OpenSSH's sshd and nixgate serve side by side on
# loopback, measured in the same run, written to docs/BENCHMARKS.md.
# Needs root and the packages `make deps` installs. LONG=1 for longer series.
set -euo pipefail
cd "$(dirname "$0")/.."
export NIXGATE_BENCH_REPORT=1
[ -z "${LONG:-}" ] || export NIXGATE_BENCH_LONG=1
. bench/baseline.sh
go test -tags bench ./e2e -count=1 -run '^$' -bench '^BenchmarkReport$' -benchtime 1x -timeout 60m
