package nixproto

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nixgate/nixgate/policy"
)

// MaxAuditPaths is how many paths of each kind an Audit lists; the counts
// go on past it.
const MaxAuditPaths = 100

// Audit is what one session moved, as the filter saw it.
type Audit struct {
	// Version is the protocol version the session speaks ("1.34"), empty
	// before the hellos.
	Version string
	// Features are the worker protocol features the session uses (1.38
	// and later).
	Features []string
	// Ops counts the operations passed to Nix, by name.
	Ops map[string]int
	// Refused names the refused operations, in order, up to
	// MaxAuditPaths; RefusedCount counts them all.
	Refused      []string
	RefusedCount int
	// DroppedSettings names the SetOptions overrides nixgate dropped.
	DroppedSettings []string
	// Imported are the paths added to the store; Bytes are their NAR
	// bytes. A content-addressed AddToStore, whose path Nix computes,
	// is listed by its name.
	Imported PathSet
	// Built are the derivations and outputs asked to be built.
	Built PathSet
	// Builds counts the build operations that asked for something to be
	// built (BuildPaths of paths that are all valid already do not).
	Builds int
	// BuildTime is the time those operations took: each from reaching
	// Nix until Nix answered it (worker protocol), or until the client's
	// next operation (serve protocol, whose answers nixgate does not
	// follow; nix-store --serve answers a build when it is done, and
	// clients wait for the answer), or the end of the session. Zero when
	// nothing was built.
	BuildTime time.Duration
	// SlotWait is the time those operations waited for a build slot
	// (Options.AcquireBuild) before reaching Nix, refused ones included.
	// Zero when none waited.
	SlotWait time.Duration
	// BytesToNix are the bytes of the client's stream passed on to Nix
	// (refused operations are not).
	BytesToNix uint64
	// Read are the paths whose contents were sent to the client; Bytes
	// are what Nix sent in answer.
	Read PathSet
}

// PathSet is a count of store paths, their bytes, and the first
// MaxAuditPaths of them.
type PathSet struct {
	Count int      `json:"count"`
	Bytes uint64   `json:"bytes"`
	Paths []string `json:"paths,omitempty"`
}

func (s *PathSet) add(paths []string, bytes uint64) {
	s.Count += len(paths)
	s.Bytes += bytes
	for _, p := range paths {
		if len(s.Paths) < MaxAuditPaths {
			s.Paths = append(s.Paths, p)
		}
	}
}

func (a Audit) clone() Audit {
	a.Ops = maps.Clone(a.Ops)
	a.Refused = slices.Clone(a.Refused)
	a.DroppedSettings = slices.Clone(a.DroppedSettings)
	a.Imported.Paths = slices.Clone(a.Imported.Paths)
	a.Built.Paths = slices.Clone(a.Built.Paths)
	a.Read.Paths = slices.Clone(a.Read.Paths)
	return a
}

// LogAttrs returns the audit as slog attributes for a session record.
func (a Audit) LogAttrs() []any {
	attrs := []any{"protocol_version", a.Version, "ops", a.Ops, "imported", a.Imported, "built", a.Built, "read", a.Read}
	if len(a.Features) > 0 {
		attrs = append(attrs, "features", a.Features)
	}
	if a.Builds > 0 {
		attrs = append(attrs, "builds", a.Builds, "build_time", a.BuildTime.String())
	}
	if a.SlotWait > 0 {
		attrs = append(attrs, "slot_wait", a.SlotWait.String())
	}
	if a.RefusedCount > 0 {
		attrs = append(attrs, "refused_ops", a.Refused, "refused_count", a.RefusedCount)
	}
	if len(a.DroppedSettings) > 0 {
		attrs = append(attrs, "dropped_settings", a.DroppedSettings)
	}
	return attrs
}

func versionString(p policy.Protocol, v uint64) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%d.%d", v>>8, v&0xff)
}
