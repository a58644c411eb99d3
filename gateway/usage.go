package gateway

import (
	gliderssh "github.com/gliderlabs/ssh"

	"github.com/nixgate/nixgate/usage"
)

// recordUsage adds c to the usage of the session's verified key: the
// metrics and the usage store (Options.Usage). A session without a
// verified key is not counted.
func (s *Server) recordUsage(ctx gliderssh.Context, c usage.Counters) {
	name, _, ok := identity(ctx)
	if !ok {
		return
	}
	s.metrics.usage(name, c)
	s.usage.Record(name, c)
}
