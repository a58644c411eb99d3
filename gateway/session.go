package gateway

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/nixgate/nixgate/buildlog"
	"github.com/nixgate/nixgate/certauth"
	"github.com/nixgate/nixgate/nixproto"
	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
	"github.com/nixgate/nixgate/session"
	"github.com/nixgate/nixgate/usage"
)

// refuse ends a session with one line on the client's stderr, a log
// record with the detail, and exit status 1.
func refuse(sess gliderssh.Session, log *slog.Logger, msg string, attrs ...any) {
	fmt.Fprintln(sess.Stderr(), "nixgate: "+msg)
	log.Warn("refused", append([]any{"reason", msg}, attrs...)...)
	sess.Exit(1)
}

// handleSession decides an exec (or shell) request and runs what is
// allowed.
func (s *Server) handleSession(sess gliderssh.Session) {
	// What a client sends as its own stderr (extended data) means
	// nothing to nixgate: discard it as it comes. Unread, x/crypto would
	// keep it until the channel closes, up to the whole window.
	go io.Copy(io.Discard, sess.Stderr())
	ctx := sess.Context()
	c := connOf(ctx)
	raw := sess.RawCommand()
	if c == nil {
		sess.Exit(1)
		return
	}
	name, fp, ok := identity(ctx)
	log := c.log.With("user", sess.User(), "key", name, "fingerprint", fp)
	cert, force, hasForce := certOf(ctx)
	if cert != nil {
		log = log.With(cert...)
	}
	if hasForce {
		// The certificate's command runs, whatever the client asked
		// for, as under OpenSSH's sshd.
		log = log.With("client_command", raw)
		raw = force
	}
	log = log.With("command", raw)
	if !ok {
		refuse(sess, log, "refused: the connection has no verified key")
		return
	}
	if !s.sessionStarted(c) {
		refuse(sess, log, fmt.Sprintf("refused: at most %d sessions per connection", s.Config().Serve.Limits.MaxSessionsPerConn))
		return
	}
	defer s.sessionEnded(c)
	s.startKeepalive(c, ctx)

	st := s.state.Load()
	if crt := s.certOfConn(c); crt != nil {
		// Each session checks the certificate again, under the
		// configuration and revoked file in force now: one revoked,
		// expired or no longer trusted since the connection logged in
		// opens no new session.
		if l, err := certauth.Check(st.cfg, crt, c.remote, time.Now()); err != nil || l.Key.Name != name {
			why := "it now logs in as another key"
			if err != nil {
				why = policy.Line(err)
			}
			s.metrics.session("refused")
			refuse(sess, log, "refused: the certificate is no longer accepted: "+why, "decision", "deny")
			return
		}
	}
	// A key the key source answered is asked about again (its answer may
	// be cached), and decided with the configuration and that key.
	pub := s.sourcedOf(c)
	cfgNow, engine := st.cfg, st.engine
	if pub != nil {
		var err error
		if cfgNow, engine, err = sourcedConfig(st, sess.User(), pub, name); err != nil {
			s.metrics.session("refused")
			refuse(sess, log, "refused: "+err.Error(), "decision", "deny")
			return
		}
	}
	// The session counts against the key's max_sessions from here, Lix's
	// start-up dialogue and the operator's shell included.
	release, err := s.acquireKeySession(cfgNow.Key(name))
	if err != nil {
		s.metrics.session("refused")
		refuse(sess, log, "refused: "+err.Error(), "decision", "deny")
		s.recordUsage(ctx, usage.Refusal)
		return
	}
	defer release()
	v := session.Decide(session.Request{
		Engine:  engine,
		Request: policy.Request{Key: name, Command: raw, Remote: c.remote},
		Mode:    session.Serve,
		Stdin:   sess,
		Stdout:  sess,
		Login:   st.cfg.User + "@" + hostOf(ctx),
		// Lix's command is decided by the configuration in force once
		// it has arrived: a reload meanwhile may have revoked the key.
		Live: func() *policy.Engine {
			live := s.state.Load()
			if pub == nil {
				return live.engine
			}
			_, e, err := sourcedConfig(live, sess.User(), pub, name)
			if err != nil {
				log.Warn("key source after Lix's start-up", "reason", err.Error())
				return nil
			}
			return e
		},
		LixTimeout: st.cfg.Serve.Limits.LoginGraceTime,
		Draining:   s.draining,
		Health:     s.healthy,
		Busy:       s.buildsBusy,
	})
	log = log.With(v.LogAttrs()...)
	cfg := v.Config
	if cfg == nil {
		cfg = cfgNow
	}
	switch v.Kind {
	case session.Shell:
		s.runShell(sess, log, cfg, v.Decision)
		return
	case session.ShowBuildLog:
		if err := buildlog.Show(cfg, name, v.Decision.BuildLog, sess); err != nil {
			refuse(sess, log, policy.Line(err), "decision", "deny")
			return
		}
		log.Info("build log shown", "decision", "allow", "drv", v.Decision.BuildLog)
		sess.Exit(0)
		return
	case session.RunNix:
	default:
		s.metrics.session("refused")
		refuse(sess, log, v.Message, "decision", "deny")
		s.recordUsage(ctx, usage.Refusal)
		return
	}
	d := v.Decision

	cmd, err := sandbox.Prepare(cfg, d, s.account)
	if err != nil {
		s.metrics.session("error")
		refuse(sess, log, "cannot run the command: "+policy.Line(err), "decision", "error")
		return
	}
	observe := func(op string, allowed bool) { s.metrics.op(name, op, allowed) }
	logs := buildlog.Start(cfg, name, log)
	filter := v.Filter(sess.Stderr(), log, observe, s.acquireBuild(name), logs.Func())
	defer s.track(name, raw, c.remote, filter)()
	s.run(sess, log.With("argv", cmd.Argv), cmd, filter, nil, logs)
}

// sourcedConfig returns st's configuration with the key that st's key
// source answers now for pub as user, which must be the key named name,
// and its engine.
func sourcedConfig(st *state, user string, pub gossh.PublicKey, name string) (*policy.Config, *policy.Engine, error) {
	if st.source == nil {
		return nil, nil, fmt.Errorf("the key source is no longer configured")
	}
	k, err := st.source.Lookup(user, pub)
	if err != nil {
		return nil, nil, fmt.Errorf("%s", policy.Line(err))
	}
	if k == nil || k.Name != name {
		return nil, nil, fmt.Errorf("the key source no longer answers this key as %q", name)
	}
	cfg := *st.cfg
	cfg.Keys = append(slices.Clone(st.cfg.Keys), *k)
	return &cfg, policy.NewEngine(&cfg), nil
}

// run starts cmd wired to the session through filter, kills its process
// group when the client goes away, and sends its exit status or signal
// back: status 1 when the filter ended the session with a refusal. A nil
// filter (the operator's shell) connects cmd to the session directly; a
// non-nil tty runs it on a terminal of that size, which follows the
// client's window changes.
func (s *Server) run(sess gliderssh.Session, log *slog.Logger, cmd *sandbox.Command, filter *nixproto.Filter, tty *terminal, logs *buildlog.Recorder) {
	defer cmd.Done()
	defer logs.Close()
	start := time.Now()
	stdio := sandbox.IO{Stdin: sess, Stdout: sess, Stderr: sess.Stderr()}
	if tty != nil {
		stdio.Terminal = &tty.size
	}
	if filter != nil {
		nixIn, nixOut, err := filter.Attach(sess, sess)
		if err != nil {
			s.metrics.session("error")
			refuse(sess, log, "cannot run the command: "+policy.Line(err), "decision", "error")
			return
		}
		stdio.Stdin, stdio.Stdout = nixIn, nixOut
		stdio.Stderr = filter.NixStderr(stdio.Stderr)
	}
	p, err := s.startProcess(cmd, stdio)
	if err != nil {
		if filter != nil {
			filter.Close()
		}
		s.metrics.session("error")
		refuse(sess, log, "cannot run the command: "+policy.Line(err), "decision", "error")
		return
	}
	defer s.sessionDone()
	s.metrics.session("allowed")
	log.Info("allowed", "decision", "allow", "pid", p.Pid())
	if tty != nil {
		go func() {
			// Until the session's requests end.
			for w := range tty.resize {
				p.Resize(uint16(w.Height), uint16(w.Width))
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-sess.Context().Done():
			// The client went away: take the whole process group down.
			s.stop(p, done)
		case <-done:
		}
	}()
	status, sig, werr := p.Wait()
	close(done)
	s.processEnded(p)
	var audit nixproto.Audit
	var ferr error
	if filter != nil {
		filter.Close()
		audit, ferr = filter.Result()
	}
	if errors.Is(ferr, nixproto.ErrRefused) && sig == 0 {
		status = 1
	}
	in, out, errOut := p.Bytes()
	in = max(in, int64(audit.BytesToNix)) // Nix's stdin is the filter's pipe
	s.metrics.bytes(in, out+errOut)
	attrs := []any{"decision", "allow", "exit_status", status, "duration", time.Since(start).String(), "bytes_in", in, "bytes_out", out, "bytes_stderr", errOut}
	if filter != nil {
		attrs = append(attrs, audit.LogAttrs()...)
		s.recordUsage(sess.Context(), usage.FromSession(audit, in, out+errOut))
	}
	if sig != 0 {
		attrs = append(attrs, "signal", unix.SignalName(sig))
	}
	if werr != nil {
		attrs = append(attrs, "error", werr.Error())
	}
	if ferr != nil {
		attrs = append(attrs, "filter", policy.Line(ferr))
	}
	attrs = append(attrs, logs.End()...)
	log.Info("session ended", attrs...)
	if sig != 0 {
		sendExitSignal(sess, sig)
		return
	}
	sess.Exit(status)
}

func (s *Server) startProcess(cmd *sandbox.Command, stdio sandbox.IO) (*sandbox.Process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, fmt.Errorf("the builder is shutting down; try again shortly")
	}
	dir := s.account.Home
	if fi, err := os.Stat(dir); dir == "" || err != nil || !fi.IsDir() {
		dir = "/"
	}
	p, err := cmd.Start(s.cred, dir, stdio)
	if err != nil {
		return nil, err
	}
	s.procs[p] = struct{}{}
	s.active++
	s.metrics.running(len(s.procs))
	return p, nil
}

func (s *Server) processEnded(p *sandbox.Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.procs, p)
	s.metrics.running(len(s.procs))
}

// sessionDone counts a session whose exit has been sent; the last one
// during a shutdown ends the drain.
func (s *Server) sessionDone() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	if s.closing && s.active == 0 && s.drained != nil {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
}

// acquireKeySession counts a running session of k against its
// max_sessions.
func (s *Server) acquireKeySession(k *policy.Key) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k == nil {
		return nil, fmt.Errorf("key is no longer configured")
	}
	if k.MaxSessions > 0 && s.sessions[k.Name] >= k.MaxSessions {
		return nil, fmt.Errorf("key %q already has %d sessions running (max_sessions)", k.Name, k.MaxSessions)
	}
	s.sessions[k.Name]++
	name := k.Name
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.sessions[name]--
		if s.sessions[name] == 0 {
			delete(s.sessions, name)
		}
	}, nil
}

// stop ends p's process group: SIGTERM, which Nix takes as an interrupt
// and passes on to its builders (which run in sessions of their own), then
// SIGKILL after the kill grace unless done closes first.
func (s *Server) stop(p *sandbox.Process, done <-chan struct{}) {
	p.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(s.grace):
		p.Signal(syscall.SIGKILL)
	}
}

// sendExitSignal reports that the command was killed by sig (RFC 4254
// section 6.10) and closes the channel.
func sendExitSignal(sess gliderssh.Session, sig syscall.Signal) {
	msg := struct {
		Signal     string
		CoreDumped bool
		Error      string
		Lang       string
	}{Signal: strings.TrimPrefix(unix.SignalName(sig), "SIG")}
	sess.SendRequest("exit-signal", false, gossh.Marshal(&msg))
	sess.Close()
}

// hostOf returns the address the client connected to, for hints.
func hostOf(ctx gliderssh.Context) string {
	a := addrOf(ctx.LocalAddr())
	if !a.IsValid() {
		return "this-builder"
	}
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}
