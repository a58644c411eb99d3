package policy

import (
	"fmt"
	"strconv"
	"time"
)

// BuildLimits cap what a key's builds may run for, log and use, whatever
// the client asks: nixgate rewrites the build options of the serve
// protocol's BuildPaths and BuildDerivation, and the SetOptions of the
// worker protocol, to the lower of the client's value and the cap, and
// gives the Nix it runs for the key the caps as settings (NixSettings).
// The zero BuildLimits caps nothing; a zero field caps nothing.
type BuildLimits struct {
	// BuildTimeout bounds a build's run time.
	BuildTimeout time.Duration
	// MaxSilentTime bounds how long a build may print nothing.
	MaxSilentTime time.Duration
	// MaxLogSize bounds a build's log, in bytes.
	MaxLogSize uint64
	// BuildCores bounds the cores one build is told to use (Nix's
	// cores, the builder's NIX_BUILD_CORES).
	BuildCores uint64
	// MaxJobs bounds how many builds one Nix session runs at once (Nix's
	// max-jobs).
	MaxJobs uint64
}

// IsZero reports whether l caps nothing.
func (l BuildLimits) IsZero() bool { return l == BuildLimits{} }

// capped returns the lower of client and limit, where a client's 0 (Nix's
// "no limit") is above every limit; a zero limit passes client.
func capped(client, limit uint64) uint64 {
	if limit == 0 || (client != 0 && client <= limit) {
		return client
	}
	return limit
}

func seconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	s := uint64((d + time.Second - 1) / time.Second)
	return s
}

// CapBuildTimeout returns the build timeout, in seconds, to give Nix for a
// client that asked for client seconds.
func (l BuildLimits) CapBuildTimeout(client uint64) uint64 {
	return capped(client, seconds(l.BuildTimeout))
}

// CapMaxSilentTime is CapBuildTimeout for max-silent-time.
func (l BuildLimits) CapMaxSilentTime(client uint64) uint64 {
	return capped(client, seconds(l.MaxSilentTime))
}

// CapMaxLogSize is CapBuildTimeout for max-log-size, in bytes.
func (l BuildLimits) CapMaxLogSize(client uint64) uint64 { return capped(client, l.MaxLogSize) }

// CapCores is CapBuildTimeout for cores: a client's 0, which tells a
// build to use every core, is above every cap.
func (l BuildLimits) CapCores(client uint64) uint64 { return capped(client, l.BuildCores) }

// CapMaxJobs is CapBuildTimeout for max-jobs. Unlike the others, a
// client's 0 means the least (no local builds), so it stays 0.
func (l BuildLimits) CapMaxJobs(client uint64) uint64 {
	if l.MaxJobs == 0 {
		return client
	}
	return min(client, l.MaxJobs)
}

// NixSettings returns the caps as Nix settings ("timeout = 7200"), in a
// fixed order and under the names Nix (2.4 to 2.35) and Lix know, for
// the configuration nixgate gives the Nix it runs for the key: they are
// what Nix uses when the client asks nothing (the serve protocol never
// sends cores or max-jobs). Nil when l caps nothing.
func (l BuildLimits) NixSettings() []string {
	var out []string
	add := func(name string, v uint64) {
		if v > 0 {
			out = append(out, name+" = "+strconv.FormatUint(v, 10))
		}
	}
	add("timeout", seconds(l.BuildTimeout))
	add("max-silent-time", seconds(l.MaxSilentTime))
	add("max-build-log-size", l.MaxLogSize)
	add("cores", l.BuildCores)
	add("max-jobs", l.MaxJobs)
	return out
}

func (v *validator) limits(at string, fk KeySpec) BuildLimits {
	var l BuildLimits
	parse := func(name, s string) time.Duration {
		if s == "" {
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Second {
			v.fail(at+"."+name, "%q is not a duration of a second or more (\"2h\", \"90s\")", s)
			return 0
		}
		return d
	}
	l.BuildTimeout = parse("build_timeout", fk.BuildTimeout)
	l.MaxSilentTime = parse("max_silent_time", fk.MaxSilentTime)
	count := func(name string, n int64) uint64 {
		if n < 0 {
			v.fail(at+"."+name, "%d is negative (0 means no limit)", n)
			return 0
		}
		return uint64(n)
	}
	l.MaxLogSize = count("max_log_size", fk.MaxLogSize)
	l.BuildCores = count("build_cores", fk.BuildCores)
	l.MaxJobs = count("max_jobs", fk.MaxJobs)
	if fk.Role != RoleBuild {
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"build_timeout", l.BuildTimeout > 0}, {"max_silent_time", l.MaxSilentTime > 0}, {"max_log_size", l.MaxLogSize > 0},
			{"build_cores", l.BuildCores > 0}, {"max_jobs", l.MaxJobs > 0},
		} {
			if f.set {
				v.fail(at+"."+f.name, "build limits are for build keys")
			}
		}
	}
	return l
}

// String describes l for logs: "build_timeout=2h0m0s max_silent_time=…".
func (l BuildLimits) String() string {
	return fmt.Sprintf("build_timeout=%v max_silent_time=%v max_log_size=%d build_cores=%d max_jobs=%d", l.BuildTimeout, l.MaxSilentTime, l.MaxLogSize, l.BuildCores, l.MaxJobs)
}
