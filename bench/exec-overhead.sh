#!/usr/bin/env bash
# Measures what `nixgate exec` adds to `nix store ping --store ssh://…`
# through a real OpenSSH sshd, against a plain forced command that runs
# nix-store directly, alternating the two in the same run. Needs root and
# the packages `make deps` installs. PAIRS=N sets the number of pairs.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${PAIRS:-40}
NIXGATE_BENCH_REPORT=1 go test -tags bench ./e2e -count=1 -run '^$' \
  -bench '^(BenchmarkExecOverhead|BenchmarkExecDecide)$' -benchtime "${pairs}x"
