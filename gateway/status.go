package gateway

import (
	"net/netip"
	"slices"
	"time"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/nixproto"
	"github.com/nixgate/nixgate/status"
)

// liveSession is a running Nix session, for Status.
type liveSession struct {
	key, command string
	remote       netip.Addr
	started      time.Time
	filter       *nixproto.Filter
}

// track counts a session as running until the returned func is called.
func (s *Server) track(key, command string, remote netip.Addr, filter *nixproto.Filter) func() {
	l := &liveSession{key: key, command: command, remote: remote, started: time.Now(), filter: filter}
	s.mu.Lock()
	if s.live == nil {
		s.live = map[*liveSession]struct{}{}
	}
	s.live[l] = struct{}{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.live, l)
		s.mu.Unlock()
	}
}

// Status returns what nixgate status shows: the drain, the health, the
// build slots and queue, and the Nix sessions running with what they
// build and have moved.
func (s *Server) Status() status.Status {
	cfg := s.Config()
	st := status.Status{Mode: "serve", Time: time.Now()}
	if d, err := admission.ReadDrain(cfg.Serve.StateDir); err != nil {
		st.Draining, st.DrainReason = true, "the drain state cannot be read: "+err.Error()
	} else if d.On {
		st.Draining, st.DrainReason = true, d.Reason
	}
	st.Healthy, st.HealthReason = s.healthy()
	st.Slots = s.slots.View(cfg.Admission.MaxBuilds)
	s.mu.Lock()
	live := make([]*liveSession, 0, len(s.live))
	for l := range s.live {
		live = append(live, l)
	}
	s.mu.Unlock()
	slices.SortFunc(live, func(a, b *liveSession) int { return a.started.Compare(b.started) })
	for _, l := range live {
		se := status.Session{Key: l.key, Command: l.command, Started: l.started}
		if l.remote.IsValid() {
			se.Remote = l.remote.Unmap().String()
		}
		if l.filter != nil {
			now := l.filter.Live()
			se.Building, se.BytesIn, se.BytesOut = now.Building, now.BytesToNix, now.BytesFromNix
			if !now.BuildStarted.IsZero() {
				se.BuildStarted = &now.BuildStarted
			}
		}
		st.Sessions = append(st.Sessions, se)
	}
	return st
}
