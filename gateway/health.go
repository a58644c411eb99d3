package gateway

import (
	"time"

	"github.com/nixgate/nixgate/admission"
)

// healthy reports the health verdict last found by CheckHealth, and
// why not: the session's path reads it and checks nothing itself.
func (s *Server) healthy() (bool, string) {
	h := s.health.Load()
	if h == nil {
		return false, "not checked yet"
	}
	return h.OK, h.Reason
}

// CheckHealth checks now whether Nix on the builder works (the store
// writable by the build account, its free space above [admission]
// min_free, the daemon answering where the store is the daemon's) and
// keeps the verdict for the sessions that follow; a change is logged and
// shown in the nixgate_healthy metric. New checks once; the caller
// (nixgate serve) calls it every few seconds, outside any session. The
// daemon is greeted every 30 seconds while it answers, and at every call
// while the builder is unhealthy; a greeting may take up to two seconds.
func (s *Server) CheckHealth() admission.Health {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	t, ok := admission.TargetFor(s.state.Load().cfg, s.account.Home, s.cred)
	h := admission.Health{OK: true}
	old := s.health.Load()
	switch {
	case !ok:
	case old == nil || !old.OK || t.Socket != s.greetedSocket || time.Since(s.greeted) >= admission.GreetInterval:
		h = admission.Check(t)
		s.greeted, s.greetedSocket = time.Now(), t.Socket
	default:
		h = admission.CheckQuick(t)
	}
	s.health.Store(&h)
	s.metrics.healthy(h.OK)
	switch {
	case old != nil && old.OK == h.OK && old.Reason == h.Reason:
	case !h.OK:
		s.log.Error("unhealthy: new Nix sessions are refused, so that Nix builds elsewhere", "reason", h.Reason, "store", t.Dir, "socket", t.Socket, "free", h.Free, "min_free", t.MinFree)
	case old != nil:
		s.log.Info("healthy again: new Nix sessions are taken", "store", t.Dir, "socket", t.Socket, "free", h.Free)
	}
	return h
}
