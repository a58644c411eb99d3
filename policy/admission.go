package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// AdmissionConfig is the [admission] table: whether this builder takes
// new sessions at all.
type AdmissionConfig struct {
	// MinFree is the free space, in bytes, the store's file system must
	// have for the builder to take new Nix sessions; below it they are
	// refused at connect, so that Nix builds elsewhere. Zero means no
	// check. Load fills in DefaultMinFree when the setting is left out.
	MinFree uint64
	// MaxBuilds is how many builds run at once on this builder, shared
	// by all keys; a build beyond it waits for a slot in a fair queue
	// (first in, first out per key, round-robin across keys). Zero means
	// no limit.
	MaxBuilds int
	// BuildQueueTimeout is how long a build waits for a slot before it is
	// refused. Load fills in DefaultBuildQueueTimeout when the setting is
	// left out; it is never zero after Load.
	BuildQueueTimeout time.Duration
	// RefuseWhenBusy refuses new sessions of build keys at connect while
	// all MaxBuilds slots are taken, so that Nix tries another builder
	// instead of waiting here. False (the default) lets them in to wait.
	// It has no effect without MaxBuilds.
	RefuseWhenBusy bool
}

// DefaultBuildQueueTimeout is [admission] build_queue_timeout when the
// setting is left out.
const DefaultBuildQueueTimeout = 10 * time.Minute

// DefaultMinFree is [admission] min_free when the setting is left out:
// 64 MiB. A store with less than that cannot unpack even a small closure,
// so a build sent there fails; refusing at connect sends it to the next
// builder instead. It is small enough never to refuse a builder that
// could still build.
const DefaultMinFree = 64 << 20

// fileAdmission is the shape of the [admission] table in the file.
type fileAdmission struct {
	// MinFree is bytes (an integer) or a size such as "1G".
	MinFree           any    `toml:"min_free"`
	MaxBuilds         int    `toml:"max_builds"`
	BuildQueueTimeout string `toml:"build_queue_timeout"`
	RefuseWhenBusy    bool   `toml:"refuse_when_busy"`
}

func (v *validator) admission(f fileAdmission) AdmissionConfig {
	a := AdmissionConfig{MinFree: DefaultMinFree, MaxBuilds: f.MaxBuilds, BuildQueueTimeout: DefaultBuildQueueTimeout, RefuseWhenBusy: f.RefuseWhenBusy}
	if f.MaxBuilds < 0 {
		v.fail("admission.max_builds", "%d is negative (0 means no limit)", f.MaxBuilds)
	}
	if f.BuildQueueTimeout != "" {
		d, err := time.ParseDuration(f.BuildQueueTimeout)
		if err != nil || d <= 0 {
			v.fail("admission.build_queue_timeout", "%q is not a positive duration (\"10m\", \"90s\")", f.BuildQueueTimeout)
		} else {
			a.BuildQueueTimeout = d
		}
	}
	if f.MinFree == nil {
		return a
	}
	n, err := parseSize(f.MinFree)
	if err != nil {
		v.fail("admission.min_free", "%v", err)
		return a
	}
	a.MinFree = n
	return a
}

// parseSize accepts a number of bytes, or a string holding one with an
// optional suffix K, M, G or T (powers of 1024; "KiB", "KB" and "k" too).
func parseSize(v any) (uint64, error) {
	const want = "want bytes (an integer) or a size such as \"512M\" or \"10G\""
	switch n := v.(type) {
	case int64:
		if n < 0 {
			return 0, fmt.Errorf("%d is negative (0 means no check)", n)
		}
		return uint64(n), nil
	case string:
		s := strings.TrimSpace(n)
		num := strings.TrimRight(s, "KkMmGgTtBiI ")
		unit := strings.ToUpper(strings.TrimSpace(s[len(num):]))
		unit = strings.TrimSuffix(strings.TrimSuffix(unit, "B"), "I")
		shift := map[string]uint{"": 0, "K": 10, "M": 20, "G": 30, "T": 40}
		sh, ok := shift[unit]
		x, err := strconv.ParseUint(num, 10, 64)
		if !ok || err != nil || num == "" || (sh > 0 && x > (1<<(64-sh))-1) {
			return 0, fmt.Errorf("%q: %s", n, want)
		}
		return x << sh, nil
	}
	return 0, fmt.Errorf("%s, not %T", want, v)
}
