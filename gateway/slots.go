package gateway

import (
	"fmt"

	"github.com/nixgate/nixgate/admission"
)

// acquireBuild returns the nixproto.Options.AcquireBuild of a session of
// key: a slot of the server's build slots, by the [admission] and key
// max_builds in force when the build asks.
func (s *Server) acquireBuild(key string) func(stop <-chan struct{}) (func(), error) {
	return func(stop <-chan struct{}) (func(), error) {
		cfg := s.state.Load().cfg
		r := admission.SlotRequest{Key: key, Max: cfg.Admission.MaxBuilds, Timeout: cfg.Admission.BuildQueueTimeout}
		if k := cfg.Key(key); k != nil {
			r.KeyMax = k.MaxBuilds
		}
		release, wait, err := s.slots.Acquire(stop, r)
		s.metrics.slotWaited(wait)
		if err != nil {
			return nil, err // the client sees its line, after "nixgate: "
		}
		return release, nil
	}
}

// buildsBusy reports whether every builder-wide build slot is taken
// while [admission] refuse_when_busy is set, and the line to refuse a new
// build session with.
func (s *Server) buildsBusy() (bool, string) {
	a := s.state.Load().cfg.Admission
	if !a.RefuseWhenBusy || !s.slots.Busy(a.MaxBuilds) {
		return false, ""
	}
	return true, fmt.Sprintf("builder busy: all %d build slots are taken (max_builds)", a.MaxBuilds)
}
