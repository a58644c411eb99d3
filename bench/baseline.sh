# Sourced by the benchmark scripts: builds nixgate as it was before the
# protocol filter (the parent of the commit that added nixproto/filter.go)
# and exports NIXGATE_BENCH_BASELINE, the binary the benchmarks compare
# the filter against.
first=$(git rev-list --reverse HEAD -- nixproto/filter.go | head -1)
base_dir=$(mktemp -d)
trap 'git worktree remove --force "$base_dir/src" >/dev/null 2>&1 || true; rm -rf "$base_dir"' EXIT
git worktree add --detach "$base_dir/src" "$first^" >/dev/null 2>&1
(cd "$base_dir/src" && go build -o "$base_dir/nixgate" ./cmd/nixgate)
chmod 755 "$base_dir" "$base_dir/nixgate"
export NIXGATE_BENCH_BASELINE="$base_dir/nixgate"
