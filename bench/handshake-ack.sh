#!/usr/bin/env bash
# Measures `nix store ping --store ssh://…` through nixgate serve as it is
# against the same source built without the immediate acknowledgements
# of its handshake (gateway's quickAck, taken out with go build -overlay,
# see e2e/bench_quickack_test.go), with OpenSSH's plain forced nix-store
# as the reference, alternated in the same run. Needs root and the
# packages `make deps` installs. PAIRS=N sets the number of rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${PAIRS:-40}
NIXGATE_BENCH_REPORT=1 go test -tags bench ./e2e -count=1 -run '^$' \
  -bench '^BenchmarkHandshakeQuickAck$' -benchtime "${pairs}x" -timeout 30m
