#!/usr/bin/env bash
# Measures what each sandbox mode costs: nix store ping and a 64 MiB nix
# copy through nixgate serve in direct mode (root builder), userns and
# proot (builder without root), in the same run, as ratios to direct.
# Needs root and the packages `make deps` installs. ROUNDS=N sets rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
NIXGATE_BENCH_REPORT=1 go test -tags bench ./e2e -count=1 -run '^$' \
  -bench '^BenchmarkSandboxModes$' -benchtime "${rounds}x"
