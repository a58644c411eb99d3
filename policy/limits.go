package policy

import (
	"fmt"
	"time"
)

// BuildLimits cap what a key's builds may run for and log, whatever the client
// asks: nixgate rewrites the build options of the serve protocol's
// BuildPaths and BuildDerivation, and the SetOptions of the worker
// protocol, to the lower of the client's value and the cap. The zero
// BuildLimits caps nothing; a zero field caps nothing.
type BuildLimits struct {
	// BuildTimeout bounds a build's run time.
	BuildTimeout time.Duration
	// MaxSilentTime bounds how long a build may print nothing.
	MaxSilentTime time.Duration
	// MaxLogSize bounds a build's log, in bytes.
	MaxLogSize uint64
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
	if fk.MaxLogSize < 0 {
		v.fail(at+".max_log_size", "%d is negative (0 means no limit)", fk.MaxLogSize)
	} else {
		l.MaxLogSize = uint64(fk.MaxLogSize)
	}
	if !l.IsZero() && fk.Role != RoleBuild {
		v.fail(at, "build limits are for build keys")
	}
	return l
}

// String describes l for logs: "build_timeout=2h0m0s max_silent_time=…".
func (l BuildLimits) String() string {
	return fmt.Sprintf("build_timeout=%v max_silent_time=%v max_log_size=%d", l.BuildTimeout, l.MaxSilentTime, l.MaxLogSize)
}
