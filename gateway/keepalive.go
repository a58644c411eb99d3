package gateway

import (
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// keepaliveRequest is the global request OpenSSH's sshd sends for
// ClientAliveInterval; clients answer it (with a failure, which is an
// answer) without knowing it.
const keepaliveRequest = "keepalive@openssh.com"

// startKeepalive starts, once per connection, asking its client every
// [limits] keepalive_interval whether it is still there, from the
// connection's first session on. An unauthenticated or session-less
// connection needs none: login_grace_time and idle_timeout end those.
func (s *Server) startKeepalive(c *connState, ctx gliderssh.Context) {
	sc, ok := ctx.Value(gliderssh.ContextKeyConn).(*gossh.ServerConn)
	if !ok {
		return
	}
	s.mu.Lock()
	started := c.keepalive
	c.keepalive = true
	s.mu.Unlock()
	if started {
		return
	}
	closed := make(chan struct{})
	go func() {
		sc.Wait()
		close(closed)
	}()
	go s.keepalive(c, sc, closed)
}

// keepalive sends a keepalive each interval while none is unanswered,
// and closes the connection once keepalive_count_max intervals have
// passed without the answer: the client is gone (a vanished laptop, a
// connection a NAT dropped without a word), and closing the connection
// ends its sessions, which stops their Nix and gives back their build
// slots. The interval and count are read at each tick, so a reload
// applies; an interval of zero sends none until one is set.
func (s *Server) keepalive(c *connState, sc *gossh.ServerConn, closed <-chan struct{}) {
	interval := s.Config().Serve.Limits.KeepaliveInterval
	off := interval <= 0
	if off {
		interval = time.Minute // to look for a reload that turns them on
	}
	timer := time.NewTimer(interval)
	defer timer.Stop()
	answered := make(chan struct{}, 1)
	waiting, missed := false, 0
	for {
		select {
		case <-closed:
			return
		case <-answered:
			waiting, missed = false, 0
			continue
		case <-timer.C:
		}
		l := s.Config().Serve.Limits
		interval, off = l.KeepaliveInterval, l.KeepaliveInterval <= 0
		if off {
			waiting, missed = false, 0
			timer.Reset(time.Minute)
			continue
		}
		timer.Reset(interval)
		if waiting {
			missed++
			if missed >= l.KeepaliveCountMax {
				c.log.Warn("connection closed", "reason", "the client answered no keepalive",
					"keepalive_interval", interval.String(), "keepalive_count_max", l.KeepaliveCountMax)
				s.metrics.keepaliveClosed()
				c.conn.Close()
				return
			}
			continue
		}
		waiting = true
		go func() {
			// Any answer, success or failure, is the client's; an error
			// is the connection's end, which closed reports.
			if _, _, err := sc.SendRequest(keepaliveRequest, true, nil); err == nil {
				select {
				case answered <- struct{}{}:
				default:
				}
			}
		}()
	}
}
