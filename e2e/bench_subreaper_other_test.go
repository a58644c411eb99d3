//go:build bench && !linux

package e2e

import (
	"testing"
	"time"
)

// becomeSubreaper skips: child subreapers (and /proc) are Linux's.
func becomeSubreaper(t testing.TB) { t.Skip("the throughput benchmark needs Linux") }

// reapOrphans is never reached off Linux (becomeSubreaper skips).
func reapOrphans(t testing.TB, uid int, within time.Duration) float64 { return 0 }
