package policy

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBuildLimitCaps: each cap gives the lower of the client's value and
// the limit. A client's 0 is "no limit" to Nix for the timeouts, the log
// size and cores (every core), so it is above every limit; for max-jobs
// it is the least (no local builds) and stays. A zero limit caps
// nothing.
func TestBuildLimitCaps(t *testing.T) {
	l := BuildLimits{BuildTimeout: time.Hour, MaxSilentTime: 90 * time.Second, MaxLogSize: 1000, BuildCores: 4, MaxJobs: 2}
	capOf := map[string]func(BuildLimits, uint64) uint64{
		"build_timeout":   BuildLimits.CapBuildTimeout,
		"max_silent_time": BuildLimits.CapMaxSilentTime,
		"max_log_size":    BuildLimits.CapMaxLogSize,
		"build_cores":     BuildLimits.CapCores,
		"max_jobs":        BuildLimits.CapMaxJobs,
	}
	tests := []struct {
		cap           string
		client, want  uint64
		zeroLimitWant uint64
	}{
		{"build_timeout", 0, 3600, 0},
		{"build_timeout", 7200, 3600, 7200},
		{"build_timeout", 60, 60, 60},
		{"max_silent_time", 0, 90, 0},
		{"max_silent_time", 91, 90, 91},
		{"max_silent_time", 90, 90, 90},
		{"max_log_size", 0, 1000, 0},
		{"max_log_size", 1 << 30, 1000, 1 << 30},
		{"max_log_size", 999, 999, 999},
		{"build_cores", 0, 4, 0},
		{"build_cores", 64, 4, 64},
		{"build_cores", 1, 1, 1},
		{"max_jobs", 0, 0, 0},
		{"max_jobs", 16, 2, 16},
		{"max_jobs", 1, 1, 1},
	}
	for _, tt := range tests {
		if got := capOf[tt.cap](l, tt.client); got != tt.want {
			t.Errorf("%s: cap(%d) = %d; want %d", tt.cap, tt.client, got, tt.want)
		}
		if got := capOf[tt.cap](BuildLimits{}, tt.client); got != tt.zeroLimitWant {
			t.Errorf("%s without a limit: cap(%d) = %d; want %d", tt.cap, tt.client, got, tt.zeroLimitWant)
		}
	}
	// Durations round up to whole seconds: a limit never becomes 0.
	if got := (BuildLimits{BuildTimeout: 1500 * time.Millisecond}).CapBuildTimeout(0); got != 2 {
		t.Errorf("1.5 s build_timeout caps to %d s; want 2", got)
	}
}

// TestBuildLimitNixSettings: the limits as the Nix settings nixgate gives
// the Nix it runs, under the names Nix 2.4-2.35 and Lix know.
func TestBuildLimitNixSettings(t *testing.T) {
	tests := []struct {
		l    BuildLimits
		want []string
	}{
		{BuildLimits{}, nil},
		{BuildLimits{BuildTimeout: 3 * time.Second}, []string{"timeout = 3"}},
		{BuildLimits{BuildCores: 2, MaxJobs: 1}, []string{"cores = 2", "max-jobs = 1"}},
		{BuildLimits{BuildTimeout: 2 * time.Hour, MaxSilentTime: time.Minute, MaxLogSize: 1 << 20, BuildCores: 8, MaxJobs: 4},
			[]string{"timeout = 7200", "max-silent-time = 60", "max-build-log-size = 1048576", "cores = 8", "max-jobs = 4"}},
	}
	for _, tt := range tests {
		if got := tt.l.NixSettings(); !slices.Equal(got, tt.want) {
			t.Errorf("%v.NixSettings() = %q; want %q", tt.l, got, tt.want)
		}
	}
}

// TestLoadBuildLimits: a build key's limits as written, and the ones
// refused.
func TestLoadBuildLimits(t *testing.T) {
	const key = "user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n"
	good := []struct {
		doc  string
		want BuildLimits
	}{
		{key, BuildLimits{}},
		{key + "build_timeout = \"2h\"\nmax_silent_time = \"90s\"\nmax_log_size = 1048576\n",
			BuildLimits{BuildTimeout: 2 * time.Hour, MaxSilentTime: 90 * time.Second, MaxLogSize: 1 << 20}},
		{key + "build_cores = 4\nmax_jobs = 2\n", BuildLimits{BuildCores: 4, MaxJobs: 2}},
		{key + "build_cores = 0\nmax_jobs = 0\n", BuildLimits{}},
	}
	for _, tt := range good {
		cfg, err := Parse("c.toml", []byte(tt.doc))
		if err != nil {
			t.Errorf("%q: %v", tt.doc, err)
			continue
		}
		if got := cfg.Keys[0].Limits; got != tt.want {
			t.Errorf("%q: limits %v; want %v", tt.doc, got, tt.want)
		}
	}
	bad := []struct{ doc, want string }{
		{key + "build_cores = -1\n", "c.toml:5: keys[0].build_cores: -1 is negative (0 means no limit)"},
		{key + "max_jobs = -2\n", "c.toml:5: keys[0].max_jobs: -2 is negative (0 means no limit)"},
		{key + "max_jobs = \"auto\"\n", "c.toml:5"},
		{key + "build_timeout = \"500ms\"\n", "keys[0].build_timeout: \"500ms\" is not a duration of a second or more"},
		{key + "max_log_size = -1\n", "keys[0].max_log_size: -1 is negative"},
		{"user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"substitute\"\nbuild_cores = 2\n", "c.toml:5: keys[0].build_cores: build limits are for build keys"},
		{"user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"shell\"\nmax_jobs = 1\n", "c.toml:5: keys[0].max_jobs: build limits are for build keys"},
	}
	for _, tt := range bad {
		_, err := Parse("c.toml", []byte(tt.doc))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v; want one containing %q", tt.doc, err, tt.want)
		}
	}
}
