package gateway

import (
	"fmt"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/policy"
)

// maxChannelRequests bounds the requests one session channel may send.
const maxChannelRequests = 64

// maxGlobalRequestsPerMinute bounds keepalives and other global requests
// on one connection; more is abuse and closes the connection.
const maxGlobalRequestsPerMinute = 120

// sessionChannel hands a session channel to gliderlabs' session handler
// through a filter that refuses, with a line on the client's stderr and
// a log record, every request nixgate does not serve.
func (s *Server) sessionChannel(srv *gliderssh.Server, conn *gossh.ServerConn, nc gossh.NewChannel, ctx gliderssh.Context) {
	if _, _, ok := identity(ctx); !ok {
		nc.Reject(gossh.Prohibited, "nixgate: no verified key")
		return
	}
	gliderssh.DefaultSessionHandler(srv, conn, &filteredChannel{NewChannel: nc, s: s, c: connOf(ctx)}, ctx)
}

type filteredChannel struct {
	gossh.NewChannel
	s *Server
	c *connState
}

func (f *filteredChannel) Accept() (gossh.Channel, <-chan *gossh.Request, error) {
	ch, reqs, err := f.NewChannel.Accept()
	if err != nil {
		return ch, reqs, err
	}
	out := make(chan *gossh.Request)
	go f.filter(ch, reqs, out)
	return ch, out, nil
}

func (f *filteredChannel) filter(ch gossh.Channel, in <-chan *gossh.Request, out chan<- *gossh.Request) {
	defer close(out)
	n := 0
	for req := range in {
		n++
		if n > maxChannelRequests {
			f.c.log.Warn("channel closed", "reason", "too many channel requests", "limit", maxChannelRequests)
			ch.Close()
			continue
		}
		switch req.Type {
		case "exec", "shell", "window-change", "signal", "break":
			out <- req
			continue
		case "env":
			// Ignored, as nixgate gives commands a clean environment. Not
			// echoed to the client: Debian's ssh sends LANG on every
			// connection.
			var kv struct{ Name, Value string }
			if gossh.Unmarshal(req.Payload, &kv) == nil {
				f.c.log.Info("env request ignored", "name", kv.Name)
			}
		case "pty-req":
			if role := f.s.roleOf(f.c); role != policy.RoleShell {
				f.deny(ch, req, shellHint(role))
				continue
			}
			out <- req
			continue
		case "x11-req":
			f.deny(ch, req, "X11 forwarding is not offered: this builder runs only Nix's commands")
			continue
		case "auth-agent-req@openssh.com":
			f.deny(ch, req, "agent forwarding is not offered: this builder runs only Nix's commands")
			continue
		case "subsystem":
			var sub struct{ Name string }
			gossh.Unmarshal(req.Payload, &sub)
			f.deny(ch, req, fmt.Sprintf("subsystem %q is not offered: this builder runs only Nix's commands", sub.Name))
			continue
		default:
			f.c.log.Warn("channel request refused", "type", req.Type)
		}
		if req.WantReply {
			req.Reply(false, nil)
		}
	}
}

// deny refuses a channel request with a line on the channel's stderr and
// a log record. A subsystem request is taken (as OpenSSH takes it when a
// command is forced) and answered with the line and exit status 1: a
// client that is told "failed" gives up before it prints the line.
func (f *filteredChannel) deny(ch gossh.Channel, req *gossh.Request, msg string) {
	f.c.log.Warn("refused", "request", req.Type, "reason", msg)
	if req.Type == "subsystem" {
		if req.WantReply {
			req.Reply(true, nil)
		}
		fmt.Fprintln(ch.Stderr(), "nixgate: refused: "+msg)
		ch.SendRequest("exit-status", false, gossh.Marshal(&struct{ Status uint32 }{1}))
		ch.Close()
		return
	}
	fmt.Fprintln(ch.Stderr(), "nixgate: refused: "+msg)
	if req.WantReply {
		req.Reply(false, nil)
	}
}

// refuseChannel refuses every channel type but "session": direct-tcpip
// (ssh -L, -W), direct-streamlocal, and anything else.
func (s *Server) refuseChannel(_ *gliderssh.Server, _ *gossh.ServerConn, nc gossh.NewChannel, ctx gliderssh.Context) {
	msg := fmt.Sprintf("nixgate: refused: %s channels (port or socket forwarding) are not offered: this builder runs only Nix's commands", nc.ChannelType())
	if c := connOf(ctx); c != nil {
		c.log.Warn("refused", "channel", nc.ChannelType(), "reason", "forwarding is not offered")
	}
	nc.Reject(gossh.Prohibited, msg)
}

// globalRequest refuses every global request (tcpip-forward for ssh -R,
// streamlocal-forward, …) and closes a connection that floods them.
func (s *Server) globalRequest(ctx gliderssh.Context, _ *gliderssh.Server, req *gossh.Request) (bool, []byte) {
	c := connOf(ctx)
	if c == nil {
		return false, nil
	}
	s.mu.Lock()
	now := time.Now()
	if now.Sub(c.reqWindow) > time.Minute {
		c.reqWindow, c.requests = now, 0
	}
	c.requests++
	flood := c.requests > maxGlobalRequestsPerMinute
	s.mu.Unlock()
	if flood {
		c.log.Warn("connection closed", "reason", "too many global requests", "per_minute", maxGlobalRequestsPerMinute)
		c.conn.Close()
		return false, nil
	}
	if req.Type != "keepalive@openssh.com" {
		c.log.Warn("refused", "global_request", req.Type, "reason", "forwarding is not offered")
	}
	return false, nil
}
