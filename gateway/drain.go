package gateway

import (
	"github.com/nixgate/nixgate/admission"
)

// drainUnknown is Server.drain before the drain state was first read.
const drainUnknown = -1

// draining reports whether the builder is draining, and the line to
// refuse a session with; it reads state_dir's drain file (one open(2)
// when not draining) and records a change.
func (s *Server) draining() (bool, string) {
	d, err := admission.ReadDrain(s.state.Load().cfg.Serve.StateDir)
	s.observeDrain(d, err)
	return d.On, d.Message()
}

// CheckDrain reads the drain state (nixgate drain) now: a change is
// logged and shown in the nixgate_draining metric. Sessions read it
// themselves; this is for a watcher, so that a drain shows before the
// next session comes. It reports whether the builder is draining.
func (s *Server) CheckDrain() bool {
	d, err := admission.ReadDrain(s.state.Load().cfg.Serve.StateDir)
	s.observeDrain(d, err)
	return d.On
}

func (s *Server) observeDrain(d admission.Drain, err error) {
	now := int32(0)
	if d.On {
		now = 1
	}
	was := s.drain.Swap(now)
	if was == now {
		return
	}
	s.metrics.draining(d.On)
	if was == drainUnknown && !d.On {
		return
	}
	path := admission.DrainPath(s.state.Load().cfg.Serve.StateDir)
	switch {
	case err != nil:
		s.log.Error("draining: the drain state cannot be read, so new sessions are refused", "file", path, "reason", err.Error())
	case d.On:
		s.log.Warn("draining: new sessions are refused, running ones finish", "file", path, "reason", d.Reason, "since", d.Since)
	default:
		s.log.Info("not draining: new sessions are taken", "file", path)
	}
}
