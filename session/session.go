// Package session is the one decision step of an SSH session, shared by
// serve mode (gateway) and exec mode (cmd/nixgate exec): it decides the
// command with policy, plays Lix 2.93.0's start-up dialogue when the
// client opens with it, and hands back a typed verdict with the stream
// filter (package nixproto) that goes between the client and Nix.
package session

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nixgate/nixgate/nixproto"
	"github.com/nixgate/nixgate/policy"
)

// Kind is what a session gets. The zero Kind refuses.
type Kind int

// The kinds of verdict.
const (
	// Refuse ends the session with Verdict.Message.
	Refuse Kind = iota
	// RunNix runs the decision's Nix program behind the verdict's
	// stream filter.
	RunNix
	// Shell runs the account's login shell for an operator key (serve
	// mode only).
	Shell
	// ShowBuildLog writes the build log of Decision.BuildLog kept for
	// the key on the session's stdout, and runs nothing.
	ShowBuildLog
)

// Mode is the transport a session arrived by.
type Mode int

// The modes.
const (
	// Serve is nixgate's own SSH server.
	Serve Mode = iota + 1
	// Exec is an OpenSSH forced command.
	Exec
)

// Request is one session to decide.
type Request struct {
	// Engine decides; a nil Engine refuses everything.
	Engine *policy.Engine
	// Request is the key, command and address.
	Request policy.Request
	// Mode is the transport. Exec mode refuses the shell role.
	Mode Mode
	// Stdin and Stdout are the session's, for Lix's start-up dialogue;
	// nil refuses that dialogue.
	Stdin  io.Reader
	Stdout io.Writer
	// Login is "user@host" as the client would reach this builder, for
	// the hint given to a person who logs in without a command. Empty
	// means "builder".
	Login string
	// Live, when not nil, returns the engine in force now. The command
	// Lix 2.93.0 sends on stdin is decided by it after the dialogue, so
	// that a key revoked or changed meanwhile is refused or narrowed; a
	// nil result refuses. Nil means Engine.
	Live func() *policy.Engine
	// LixTimeout bounds Lix's start-up dialogue. Zero means
	// DefaultLixTimeout.
	LixTimeout time.Duration
	// Draining, when not nil, reports whether the builder is draining,
	// and the line to refuse with (without the "nixgate: " prefix). A
	// session that would run Nix, or start Lix's dialogue, is then
	// refused before anything runs, so that Nix tries another builder;
	// the operator's shell still gets in. It is called once per session,
	// only for a key and command policy allows. Nil means never draining.
	Draining func() (bool, string)
	// Health, when not nil, reports whether Nix on the builder works (its
	// store writable, free space above min_free, the daemon answering),
	// and why not: a session that would run Nix, or start Lix's
	// dialogue, is then refused with "builder unhealthy: REASON" before
	// anything runs, so that Nix tries another builder; the operator's
	// shell still gets in. It is called once per session, after
	// Draining, and must be cheap: serve mode reads a verdict kept up to
	// date in the background. Nil means always healthy.
	Health func() (ok bool, reason string)
	// Busy, when not nil, reports whether every build slot of the
	// builder is taken and new build sessions are to be refused for it
	// ([admission] refuse_when_busy), and the line to refuse with
	// (without the "nixgate: " prefix). A build key's session that would
	// run Nix, or start Lix's dialogue, is then refused before anything
	// runs, so that Nix tries another builder. It is called once per
	// session, after Health. Nil means never busy.
	Busy func() (bool, string)
}

// DefaultLixTimeout is how long Lix's start-up dialogue may take when
// Request.LixTimeout is zero: Lix answers at once, so this only bounds a
// client that opens with "bash" and then holds the session.
const DefaultLixTimeout = 30 * time.Second

// Verdict is the outcome of Decide. The zero Verdict refuses without a
// message.
type Verdict struct {
	// Kind is what the session gets.
	Kind Kind
	// Decision is policy's decision on the command finally run.
	Decision policy.Decision
	// Message is the line for the client's stderr when refused, without
	// the "nixgate: " prefix every line carries.
	Message string
	// LixCommand is the command Lix 2.93.0 sent on stdin, if it did.
	LixCommand string
	// Config is the configuration the verdict was decided against:
	// Request.Engine's, or after Lix's dialogue that of Request.Live.
	// Run the command by it. Nil when there was none.
	Config *policy.Config
	// Draining is set when the session was refused because the builder
	// is draining (Request.Draining).
	Draining bool
	// Unhealthy is set when the session was refused because Nix on the
	// builder does not work (Request.Health).
	Unhealthy bool
	// Busy is set when the session was refused because every build slot
	// was taken (Request.Busy).
	Busy bool
}

// Decide decides one session. When the client opens Lix's start-up
// dialogue and does not finish it within the time limit, Decide refuses
// while a read of req.Stdin may still be pending: the caller ends the
// session, which ends that read.
func Decide(req Request) Verdict {
	d := req.Engine.Decide(req.Request)
	v := Verdict{Config: req.Engine.Config()}
	if d.LixBootstrap || d.Allow && !d.Shell && d.BuildLog == "" {
		// Admission: a session that would run Nix is refused at connect
		// while the builder is draining, unhealthy, or (for build keys)
		// out of build slots, so that Nix tries another builder.
		if refused, ok := admit(req, d); !ok {
			refused.Decision, refused.Config = d, v.Config
			return refused
		}
	}
	if d.LixBootstrap {
		if req.Stdin == nil || req.Stdout == nil {
			return Verdict{Decision: d, Config: v.Config, Message: "refused: Lix's start-up dialogue is not offered here"}
		}
		cmd, err := readLixBootstrap(req)
		if err != nil {
			return Verdict{Decision: d, Config: v.Config, Message: "refused: " + policy.Line(err)}
		}
		v.LixCommand = cmd
		engine := req.Engine
		if req.Live != nil {
			engine = req.Live()
		}
		v.Config = engine.Config()
		d = engine.Decide(req.Request.AfterLixBootstrap(cmd))
	}
	v.Decision = d
	switch {
	case d.Shell && req.Mode == Exec:
		v.Message = "refused: the shell role is for serve mode; under OpenSSH, give the operator's key a line without command="
	case d.Shell:
		v.Kind = Shell
	case d.NoCommand:
		login := req.Login
		if login == "" {
			login = "builder"
		}
		v.Message = fmt.Sprintf("this account only serves Nix, there is no shell: use it from Nix, e.g. nix store ping --store ssh://%s", login)
	case !d.Allow:
		v.Message = "refused: " + d.Reason
	case d.BuildLog != "":
		v.Kind = ShowBuildLog
	default:
		v.Kind = RunNix
	}
	return v
}

// admit asks req's admission hooks, in order, about a session that would
// run Nix for decision d; ok is false with the refusing verdict.
func admit(req Request, d policy.Decision) (Verdict, bool) {
	if req.Draining != nil {
		if on, msg := req.Draining(); on {
			return Verdict{Message: msg, Draining: true}, false
		}
	}
	if req.Health != nil {
		if ok, reason := req.Health(); !ok {
			msg := "builder unhealthy"
			if reason != "" {
				msg += ": " + reason
			}
			return Verdict{Message: msg, Unhealthy: true}, false
		}
	}
	if d.Role == policy.RoleBuild && req.Busy != nil {
		if busy, msg := req.Busy(); busy {
			return Verdict{Message: msg, Busy: true}, false
		}
	}
	return Verdict{}, true
}

// readLixBootstrap plays Lix's dialogue within req.LixTimeout.
func readLixBootstrap(req Request) (string, error) {
	limit := req.LixTimeout
	if limit <= 0 {
		limit = DefaultLixTimeout
	}
	type result struct {
		cmd string
		err error
	}
	done := make(chan result, 1)
	go func() {
		cmd, err := policy.ReadLixBootstrap(req.Stdin, req.Stdout)
		done <- result{cmd, err}
	}()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.cmd, r.err
	case <-timer.C:
		return "", fmt.Errorf("Lix start-up: no command within %s", limit)
	}
}

// LogAttrs returns what the log records of the verdict.
func (v Verdict) LogAttrs() []any {
	attrs := []any{"role", v.Decision.Role}
	if v.Draining {
		attrs = append(attrs, "draining", true)
	}
	if v.Unhealthy {
		attrs = append(attrs, "unhealthy", true)
	}
	if v.Busy {
		attrs = append(attrs, "busy", true)
	}
	if v.LixCommand != "" {
		attrs = append(attrs, "lix_command", v.LixCommand)
	}
	if v.Kind == RunNix {
		attrs = append(attrs, "protocol", v.Decision.Protocol.String())
		if v.Decision.Ops.FullTrust {
			attrs = append(attrs, "full_trust", true)
		}
	}
	return attrs
}

// Filter returns the stream filter for a RunNix verdict: stderr is the
// client's, log gets a record per refused operation, observe (may be nil)
// counts operations, acquireBuild (may be nil) hands out build slots
// (nixproto.Options.AcquireBuild), buildLog (may be nil) keeps the
// build logs (nixproto.Options.BuildLog).
func (v Verdict) Filter(stderr io.Writer, log *slog.Logger, observe func(op string, allowed bool), acquireBuild func(stop <-chan struct{}) (func(), error), buildLog func(drv string, p []byte)) *nixproto.Filter {
	return nixproto.New(nixproto.Options{
		Protocol:     v.Decision.Protocol,
		Policy:       v.Decision.Ops,
		Stderr:       stderr,
		Log:          log,
		Observe:      observe,
		AcquireBuild: acquireBuild,
		BuildLog:     buildLog,
	})
}
