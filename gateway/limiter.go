package gateway

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// sourceLimiter limits how fast one address may open connections, the
// idea of OpenSSH's PerSourcePenalties without the penalty box.
type sourceLimiter struct {
	mu      sync.Mutex
	sources map[netip.Addr]*rate.Limiter
	swept   time.Time
}

func newSourceLimiter() *sourceLimiter {
	return &sourceLimiter{sources: map[netip.Addr]*rate.Limiter{}, swept: time.Now()}
}

// allow reports whether addr may open another connection now, at most
// perMinute a minute with bursts of half that.
func (l *sourceLimiter) allow(addr netip.Addr, perMinute int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.swept) > time.Minute {
		// Forget sources whose bucket is full again, so the map stays small.
		for a, lim := range l.sources {
			if lim.TokensAt(now) >= float64(lim.Burst()) {
				delete(l.sources, a)
			}
		}
		l.swept = now
	}
	limit, burst := rate.Limit(float64(perMinute)/60), max(perMinute/2, 1)
	lim := l.sources[addr]
	if lim == nil {
		lim = rate.NewLimiter(limit, burst)
		l.sources[addr] = lim
	} else if lim.Limit() != limit || lim.Burst() != burst {
		// The configuration was reloaded with another rate.
		lim.SetLimitAt(now, limit)
		lim.SetBurstAt(now, burst)
	}
	return lim.AllowN(now, 1)
}
