package gateway

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/policy"
)

type ctxKey string

const connStateKey ctxKey = "nixgate-conn"

// connState is what the server tracks of one connection. The fields
// after log are guarded by Server.mu.
type connState struct {
	id     string
	remote netip.Addr
	conn   *trackedConn
	log    *slog.Logger

	authed   bool
	role     policy.Role        // of the verified key
	cert     *gossh.Certificate // the verified certificate; nil for a plain key
	sourced  gossh.PublicKey    // the verified key, when the key source answered it
	started  time.Time          // when the connection was admitted
	unauthed bool               // still counted as unauthenticated
	sessions int
	// streams is what processProcs counts for the connection: one while
	// it is open, or its sessions when it has more; zero once closed.
	streams   int
	idle      *time.Timer
	keepalive bool // its keepalives have started
	requests  int  // global requests in the current minute
	reqWindow time.Time
}

// trackedConn calls done once, when closed, and acknowledges at once
// what it reads until the connection has authenticated.
type trackedConn struct {
	net.Conn
	once sync.Once
	done func()
	// raw is the socket quickAck works on; nil when Conn is not one.
	raw syscall.RawConn
	// handshake is true until the client's key has been verified.
	handshake atomic.Bool
}

func newTrackedConn(conn net.Conn, done func()) *trackedConn {
	tc := &trackedConn{Conn: conn, done: done}
	if sc, ok := conn.(syscall.Conn); ok {
		tc.raw, _ = sc.SyscallConn()
	}
	tc.handshake.Store(true)
	return tc
}

// Read reads from the connection and, during the handshake, has the
// kernel acknowledge what was read now instead of after the delayed-ACK
// timer. OpenSSH's ssh sets TCP_NODELAY only once its session channel is
// open: before that, when it sends two packets back to back (its
// SSH_MSG_KEXINIT before the key exchange's first message, depending on
// timing; SSH_MSG_NEWKEYS and the service request, always) Nagle's
// algorithm holds the second until the first is acknowledged, and each
// wait cost a whole delayed-ACK timeout (40 ms on Linux) per connection.
func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.raw != nil && c.handshake.Load() {
		quickAck(c.raw)
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.once.Do(c.done)
	return c.Conn.Close()
}

// connCallback admits or drops a new TCP connection before the SSH
// handshake: per-source connection rate, the limits on unauthenticated
// connections, and the login grace time.
func (s *Server) connCallback(ctx gliderssh.Context, conn net.Conn) net.Conn {
	remote := addrOf(conn.RemoteAddr())
	lim := s.Config().Serve.Limits
	c := &connState{id: s.connID(), remote: remote}
	c.log = s.log.With("conn", c.id, "remote", conn.RemoteAddr().String())
	if !s.limiter.allow(remote, lim.PerSourceRate) {
		c.log.Warn("connection refused", "reason", "per-source connection rate exceeded", "per_minute", lim.PerSourceRate)
		s.metrics.connection("rate_limited")
		return nil
	}
	tc := newTrackedConn(conn, func() { s.connClosed(c) })
	c.conn = tc
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	total, fromSource := 0, 0
	var oldest *connState
	for o := range s.conns {
		if o.unauthed {
			total++
			if o.remote == remote {
				fromSource++
			}
			if oldest == nil || o.started.Before(oldest.started) {
				oldest = o
			}
		}
	}
	if fromSource >= lim.PerSourceMaxStartups {
		s.mu.Unlock()
		c.log.Warn("connection refused", "reason", "too many unauthenticated connections from this address", "from_source", fromSource)
		s.metrics.connection("startups_exceeded")
		return nil
	}
	if total >= lim.MaxStartups && oldest != nil {
		// Full: make room by dropping the connection that has waited
		// longest without authenticating. A flood of idle connections
		// then cannot lock out a client that authenticates promptly.
		oldest.unauthed = false
		go oldest.conn.Close()
		oldest.log.Warn("connection closed", "reason", "too many unauthenticated connections; this one waited longest", "unauthenticated", total)
		s.metrics.connection("startups_evicted")
	}
	c.unauthed = true
	c.started = time.Now()
	s.conns[c] = struct{}{}
	c.streams = 1
	s.mu.Unlock()
	processProcs().add(1)
	s.metrics.connection("accepted")
	ctx.SetValue(connStateKey, c)
	time.AfterFunc(lim.LoginGraceTime, func() {
		s.mu.Lock()
		authed := c.authed
		s.mu.Unlock()
		if !authed {
			c.log.Warn("connection closed", "reason", "login grace time exceeded", "login_grace_time", lim.LoginGraceTime.String())
			tc.Close()
		}
	})
	return tc
}

func (s *Server) connClosed(c *connState) {
	s.mu.Lock()
	delete(s.conns, c)
	if c.idle != nil {
		c.idle.Stop()
	}
	streams := c.streams
	c.streams = 0
	s.mu.Unlock()
	processProcs().add(-streams)
}

// recountStreams sets c.streams from c.sessions and returns the change,
// for processProcs once s.mu is let go. The caller holds s.mu.
func (s *Server) recountStreams(c *connState) int {
	if c.streams == 0 {
		return 0 // closed, or never counted
	}
	old := c.streams
	c.streams = max(1, c.sessions)
	return c.streams - old
}

// authenticated marks c as authenticated with a key of role (with cert,
// when the key is a certificate; with sourced, the key, when the key
// source answered it) and starts its idle timer.
func (s *Server) authenticated(c *connState, role policy.Role, cert *gossh.Certificate, sourced gossh.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.authed = true
	c.role = role
	c.cert = cert
	c.sourced = sourced
	c.unauthed = false
	if c.conn != nil {
		c.conn.handshake.Store(false)
	}
	s.armIdle(c)
}

// armIdle starts the idle timer of a connection without sessions. The
// caller holds s.mu.
func (s *Server) armIdle(c *connState) {
	if c.sessions > 0 {
		return
	}
	d := s.Config().Serve.Limits.IdleTimeout
	if c.idle != nil {
		c.idle.Reset(d)
		return
	}
	c.idle = time.AfterFunc(d, func() {
		s.mu.Lock()
		idle := c.sessions == 0
		s.mu.Unlock()
		if idle {
			c.log.Info("connection closed", "reason", "idle without a session", "idle_timeout", d.String())
			c.conn.Close()
		}
	})
}

// sessionStarted counts a session on c; false when c has as many as it
// may have.
func (s *Server) sessionStarted(c *connState) bool {
	s.mu.Lock()
	if c.sessions >= s.Config().Serve.Limits.MaxSessionsPerConn {
		s.mu.Unlock()
		return false
	}
	c.sessions++
	if c.idle != nil {
		c.idle.Stop()
	}
	d := s.recountStreams(c)
	s.mu.Unlock()
	processProcs().add(d)
	return true
}

func (s *Server) sessionEnded(c *connState) {
	s.mu.Lock()
	c.sessions--
	d := s.recountStreams(c)
	if s.closing && c.sessions == 0 {
		go c.conn.Close()
	} else {
		s.armIdle(c)
	}
	s.mu.Unlock()
	processProcs().add(d)
}

// certOfConn returns c's verified certificate; nil when c logged in
// with a plain key.
func (s *Server) certOfConn(c *connState) *gossh.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.cert
}

// sourcedOf returns c's verified key when the key source answered it;
// nil otherwise.
func (s *Server) sourcedOf(c *connState) gossh.PublicKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.sourced
}

// roleOf returns the role of c's verified key.
func (s *Server) roleOf(c *connState) policy.Role {
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.role
}

func connOf(ctx gliderssh.Context) *connState {
	c, _ := ctx.Value(connStateKey).(*connState)
	return c
}

func addrOf(a net.Addr) netip.Addr {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
