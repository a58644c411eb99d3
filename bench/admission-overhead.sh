#!/usr/bin/env bash
# Measures what the drain and health checks add to `nix store ping
# --store ssh://…` through nixgate serve: nixgate with them ([admission]
# min_free, the drain state read per session, the store checked every two
# seconds) against the same source built without them (go build -overlay,
# see e2e/bench_admission_test.go), with OpenSSH's plain forced nix-store
# as the reference, alternated in the same run. Needs root and the
# packages `make deps` installs. PAIRS=N sets the number of rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${PAIRS:-40}
NIXGATE_BENCH_REPORT=1 go test -tags bench ./e2e -count=1 -run '^$' \
  -bench '^BenchmarkAdmissionOverhead$' -benchtime "${pairs}x" -timeout 30m
