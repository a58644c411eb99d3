package policy

import (
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// drvName matches the file name of a derivation in the store: a store
// path's hash and name (Nix's name characters), ending in .drv.
var drvName = regexp.MustCompile(`^[0123456789abcdfghijklmnpqrsvwxyz]{32}-[A-Za-z0-9+\-._?=]{1,207}\.drv$`)

// ValidDrvPath reports whether drv is a derivation's store path, as
// "nixgate log DRV" takes it: an absolute, clean path (no ".", ".." or
// empty elements, no trailing slash) whose last element is a
// derivation's name.
func ValidDrvPath(drv string) bool {
	return strings.HasPrefix(drv, "/") && filepath.Clean(drv) == drv && drvName.MatchString(filepath.Base(drv))
}

// BuildLogsConfig is the [build_logs] table: the build logs nixgate keeps, per
// derivation and key, of the builds that pass through it.
type BuildLogsConfig struct {
	// Off keeps no logs. False (the default) keeps them.
	Off bool
	// MaxLogSize is the most of one derivation's log kept, in bytes
	// before compression; the rest is left out, and the log says so.
	// Load fills in DefaultMaxLogSize.
	MaxLogSize uint64
	// MaxTotal is the most all kept logs may take on disk, compressed;
	// past it the oldest are removed. Load fills in DefaultMaxLogsTotal.
	MaxTotal uint64
	// Retention is how long a log is kept. Load fills in
	// DefaultLogRetention.
	Retention time.Duration
}

// The [build_logs] defaults: a log as long as a big build's (Nix's own
// max-build-log-size is unlimited; 10 MiB holds the tail end of nearly
// all), a gigabyte of them, for a month.
const (
	DefaultMaxLogSize   = 10 << 20
	DefaultMaxLogsTotal = 1 << 30
	DefaultLogRetention = 30 * 24 * time.Hour
)

// fileBuildLogs is the shape of the [build_logs] table in the file.
type fileBuildLogs struct {
	Keep       *bool  `toml:"keep"`
	MaxLogSize any    `toml:"max_log_size"`
	MaxTotal   any    `toml:"max_total"`
	Retention  string `toml:"retention"`
}

func (v *validator) buildLogs(f fileBuildLogs) BuildLogsConfig {
	c := BuildLogsConfig{MaxLogSize: DefaultMaxLogSize, MaxTotal: DefaultMaxLogsTotal, Retention: DefaultLogRetention}
	if f.Keep != nil {
		c.Off = !*f.Keep
	}
	for _, s := range []struct {
		name string
		v    any
		dst  *uint64
	}{{"build_logs.max_log_size", f.MaxLogSize, &c.MaxLogSize}, {"build_logs.max_total", f.MaxTotal, &c.MaxTotal}} {
		if s.v == nil {
			continue
		}
		n, err := parseSize(s.v)
		switch {
		case err != nil:
			v.fail(s.name, "%v", err)
		case n == 0:
			v.fail(s.name, "0 keeps nothing: set keep = false to keep no logs")
		default:
			*s.dst = n
		}
	}
	v.duration("build_logs.retention", f.Retention, &c.Retention)
	return c
}
