#!/usr/bin/env bash
# Measures what keeping build logs ([build_logs]) costs a chatty remote
# build through nixgate serve, over ssh:// and ssh-ng://: the same
# nixgate with logs kept and with keep = false, alternated in the same
# run (e2e/bench_buildlog_test.go). Target: a ratio of at most 1.03.
# Needs root and the packages `make deps` installs. ROUNDS=N sets the
# number of rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-7}
NIXGATE_BENCH_REPORT=1 go test -tags bench ./e2e -count=1 -run '^$' \
  -bench '^BenchmarkBuildLogOverhead$' -benchtime "${rounds}x" -timeout 30m
