package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/buildlog"
	"github.com/nixgate/nixgate/config"
	"github.com/nixgate/nixgate/nixproto"
	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
	"github.com/nixgate/nixgate/session"
	keyusage "github.com/nixgate/nixgate/usage"
)

const execExample = `Runs as an OpenSSH forced command: decides the command the client sent
(SSH_ORIGINAL_COMMAND) for the key named by --key, then runs the allowed Nix
command and stays between sshd and it, passing on only the Nix operations
the key's role may send. Put it in the build account's authorized_keys:

  restrict,command="/usr/local/bin/nixgate exec --config /etc/nixgate/nixgate.toml --key ci" ssh-ed25519 AAAA… ci@example

Example (what sshd does for a client running nix store ping --store ssh://builder):
  SSH_ORIGINAL_COMMAND='nix-store --serve --write' nixgate exec --config /etc/nixgate/nixgate.toml --key ci`

// execLixTimeout bounds Lix's start-up dialogue in exec mode, as
// login_grace_time does in serve mode (30 seconds by default there too).
const execLixTimeout = 30 * time.Second

func runExec(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("exec", "--config FILE --key NAME", execExample, stdout, stderr)
	configPath := fs.String("config", "/etc/nixgate/nixgate.toml", "the nixgate configuration `file`")
	keyName := fs.String("key", "", "the `name` of the [[keys]] entry this authorized_keys line is for (required)")
	if ok, code := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if *keyName == "" {
		fmt.Fprintln(stderr, "nixgate exec: --key is required: name the [[keys]] entry of this authorized_keys line")
		return exitUsage
	}
	return execMode(*configPath, *keyName, os.Getenv, stderr)
}

// refuse prints one line for the client, logs the detail, and returns the
// exit status of a refusal.
func refuse(stderr io.Writer, log *slog.Logger, msg string, attrs ...any) int {
	fmt.Fprintln(stderr, "nixgate: "+msg)
	log.Warn("refused", append([]any{"reason", msg}, attrs...)...)
	return exitRefused
}

// execMode decides the forced command and, when allowed, runs it through
// the session's protocol filter; it returns the exit status for the
// client: Nix's, or a refusal's.
func execMode(configPath, keyName string, getenv func(string) string, stderr io.Writer) int {
	// nixgate writes to sshd's pipes itself (Nix's answers, a build log;
	// over ssh:// Nix's stderr too, for its build log): once sshd has
	// closed them a write must fail with EPIPE, not kill nixgate with
	// SIGPIPE before the session's record is written. Caught, not
	// ignored: Nix starts with SIGPIPE as it would have.
	pipes := make(chan os.Signal, 1)
	signal.Notify(pipes, syscall.SIGPIPE)
	defer signal.Stop(pipes)
	cfg, err := config.Load(configPath)
	if err != nil {
		log, closeLog := execLog("")
		defer closeLog()
		return refuse(stderr, log, "configuration error, nothing was run: "+err.Error(), "mode", "exec", "key", keyName)
	}
	if err := heldFiles(cfg, false); err != nil {
		log, closeLog := execLog("")
		defer closeLog()
		return refuse(stderr, log, "refused, nothing was run: "+err.Error(), "mode", "exec", "key", keyName)
	}
	log, closeLog := execLog(cfg.Log.File)
	defer closeLog()
	raw := getenv("SSH_ORIGINAL_COMMAND")
	remote := remoteAddr(getenv("SSH_CONNECTION"))
	log = log.With("mode", "exec", "key", keyName, "remote", remote.String(), "command", raw)

	// A CA's principal logged in with a certificate: the one sshd
	// accepted must still be one nixgate accepts (its revoked file), and
	// the records name it.
	if k := cfg.Key(keyName); k != nil && k.CA != "" {
		l, err := execCert(cfg, k, getenv("SSH_USER_AUTH"), remote, time.Now())
		if err != nil {
			// The client sees that much; the log has why.
			status := refuse(stderr, log, "refused: the certificate is not accepted here", "decision", "deny", "detail", policy.Line(err))
			usageRecorder(cfg, log).Record(keyName, keyusage.Refusal)
			return status
		}
		log = log.With(l.LogAttrs()...)
	}

	// The account is this one, the configured user, and cannot write
	// its own home where the sandbox does not keep it out.
	account, _, err := preflight(cfg, configPath, modeExec)
	if err != nil {
		return refuse(stderr, log, "refused: "+policy.Line(err))
	}

	// A key's max_sessions, and the build slots, are kept in a lock
	// directory that the sessions' processes share: the session counts
	// from here, Lix's start-up dialogue included, as in serve mode.
	limits := &execLimits{log: log}
	if k := cfg.Key(keyName); admission.NeedsLockDir(cfg, k) {
		err := limits.open(cfg.Serve.StateDir)
		if err == nil {
			err = limits.session(k, cfg.Serve.StateDir)
		}
		if err != nil {
			// The refusal first: counting it must never cost its line.
			status := refuse(stderr, log, "refused: "+policy.Line(err), "decision", "deny")
			usageRecorder(cfg, log).Record(keyName, keyusage.Refusal)
			return status
		}
	} else if k != nil {
		limits.session(k, cfg.Serve.StateDir) // only announced: never refuses
	}

	v := session.Decide(session.Request{
		Engine:  policy.NewEngine(cfg),
		Request: policy.Request{Key: keyName, Command: raw, Remote: remote},
		Mode:    session.Exec,
		Stdin:   os.Stdin,
		Stdout:  os.Stdout,
		Login:   cfg.User + "@" + serverName(getenv("SSH_CONNECTION")),
		// Lix's command arrives later: decide it by the configuration
		// as it is then, so that a key revoked meanwhile is refused.
		Live: func() *policy.Engine {
			live, err := config.Load(configPath)
			if err == nil {
				err = heldFiles(live, false)
			}
			if err != nil {
				log.Warn("configuration error after Lix's start-up", "reason", err.Error())
				return nil
			}
			return policy.NewEngine(live)
		},
		LixTimeout: execLixTimeout,
		// nixgate drain's file in state_dir, the same as serve mode's.
		Draining: func() (bool, string) {
			d, err := admission.ReadDrain(cfg.Serve.StateDir)
			if err != nil {
				log.Error("the drain state cannot be read, so the session is refused", "file", admission.DrainPath(cfg.Serve.StateDir), "error", err.Error())
			}
			return d.On, d.Message()
		},
		// The store writable, min_free: stat and statfs, a few µs; the
		// daemon answering, by the verdict the sessions keep in the lock
		// directory (a greeting every 30 s while it answers).
		Health: func() (bool, string) {
			return admission.Healthy(cfg, account.Home, limits.healthDir(cfg.Serve.StateDir))
		},
		// refuse_when_busy: the slots held by every session's process.
		Busy: limits.busy(cfg, cfg.Key(keyName)),
	})
	log = log.With(v.LogAttrs()...)
	// Usage goes to state_dir's store when the build account may write
	// it; otherwise one warning, and the session goes on uncounted.
	rec := usageRecorder(cfg, log)
	if v.Kind == session.ShowBuildLog {
		if v.Config != nil {
			cfg = v.Config
		}
		if err := buildlog.Show(cfg, keyName, v.Decision.BuildLog, os.Stdout); err != nil {
			return refuse(stderr, log, policy.Line(err), "decision", "deny")
		}
		log.Info("build log shown", "decision", "allow", "drv", v.Decision.BuildLog)
		return 0
	}
	if v.Kind != session.RunNix {
		status := refuse(stderr, log, v.Message, "decision", "deny")
		rec.Record(keyName, keyusage.Refusal)
		return status
	}
	if v.Config != nil {
		cfg = v.Config
	}
	if err := checkUser(cfg, configPath, account, modeExec); err != nil {
		return refuse(stderr, log, "refused: "+err.Error())
	}
	// Builds wait for a slot among all the sessions' processes (by the
	// configuration after Lix's dialogue, when there was one).
	acquire := limits.acquireBuild(cfg, cfg.Key(keyName))
	if acquire != nil {
		if err := limits.open(cfg.Serve.StateDir); err != nil {
			return refuse(stderr, log, "refused: "+err.Error(), "decision", "deny")
		}
	}
	c, err := sandbox.Prepare(cfg, v.Decision, account)
	if err != nil {
		return refuse(stderr, log, "cannot run the command: "+policy.Line(err), "decision", "error")
	}
	log = log.With("argv", c.Argv, "sandbox", cfg.Sandbox.Mode)
	log.Info("allowed", "decision", "allow", "reason", v.Decision.Reason)
	// nixgate stays between sshd and Nix: the filter passes on only the
	// operations the key's role may send.
	logs := buildlog.Start(cfg, keyName, log)
	defer logs.Close()
	more := func() []any { return append(limits.logAttrs(), logs.End()...) }
	return runFiltered(c, account.Home, v.Filter(stderr, log, nil, acquire, logs.Func()), stderr, log, func(u keyusage.Counters) { rec.Record(keyName, u) }, more)
}

// killGrace is how long the command has after SIGTERM, when its client
// has gone, before SIGKILL (serve's default kill grace).
const killGrace = 5 * time.Second

// runFiltered runs c with the session's stdin and stdout going through
// filter, passes on SIGTERM, SIGINT and SIGHUP to its process group,
// stops it (SIGTERM, then SIGKILL after killGrace) when the client has
// gone (sshd no longer reads its stdout), logs what the session moved,
// and returns the exit status: Nix's, 128+n for a signal n, 1 when the
// filter refused. record, when not nil, gets the
// session's usage; more, when not nil, adds to the session's record.
func runFiltered(c *sandbox.Command, dir string, filter *nixproto.Filter, stderr io.Writer, log *slog.Logger, record func(keyusage.Counters), more func() []any) int {
	defer c.Done()
	start := time.Now()
	if fi, err := os.Stat(dir); dir == "" || err != nil || !fi.IsDir() {
		dir = "/"
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	nixIn, nixOut, err := filter.Attach(os.Stdin, os.Stdout)
	if err != nil {
		return refuse(stderr, log, "cannot run the command: "+policy.Line(err), "decision", "error")
	}
	p, err := c.Start(nil, dir, sandbox.IO{Stdin: nixIn, Stdout: nixOut, Stderr: filter.NixStderr(stderr)})
	if err != nil {
		filter.Close()
		return refuse(stderr, log, "cannot run the command: "+policy.Line(err), "decision", "error")
	}
	done := make(chan struct{})
	hangup := watchHangup(os.Stdout, done)
	go func() {
		var kill <-chan time.Time
		for {
			select {
			case s := <-sigs:
				p.Signal(s.(syscall.Signal))
			case <-hangup:
				// The client is gone: nobody reads what Nix builds or
				// answers, and a build waiting for a slot would hold
				// its place in the queue until build_queue_timeout.
				log.Info("client gone; stopping the command")
				hangup = nil
				p.Signal(syscall.SIGTERM)
				kill = time.After(killGrace)
			case <-kill:
				p.Signal(syscall.SIGKILL)
				kill = nil
			case <-done:
				return
			}
		}
	}()
	status, sig, werr := p.Wait()
	close(done)
	filter.Close()
	audit, ferr := filter.Result()
	in, out, errOut := p.Bytes()
	in = max(in, int64(audit.BytesToNix)) // Nix's stdin is the filter's pipe
	attrs := []any{"decision", "allow", "exit_status", status, "duration", time.Since(start).String(), "bytes_in", in, "bytes_out", out, "bytes_stderr", errOut}
	attrs = append(attrs, audit.LogAttrs()...)
	if more != nil {
		attrs = append(attrs, more()...)
	}
	if werr != nil {
		attrs = append(attrs, "error", werr.Error())
	}
	if ferr != nil {
		attrs = append(attrs, "filter", policy.Line(ferr))
	}
	switch {
	case sig != 0:
		status = 128 + int(sig)
		attrs = append(attrs, "signal", unix.SignalName(sig))
	case errors.Is(ferr, nixproto.ErrRefused):
		status = exitRefused
	}
	log.Info("session ended", attrs...)
	if record != nil {
		record(keyusage.FromSession(audit, in, out+errOut))
	}
	return status
}

// usageRecorder records exec-mode usage in state_dir's store, which the
// build account can write: in a process of its own (keyusage.AddIn), so
// that a store damaged on purpose costs the session nothing but its
// counting.
func usageRecorder(cfg *policy.Config, log *slog.Logger) *keyusage.Recorder {
	exe, err := os.Executable()
	if err != nil {
		log.Warn("usage not recorded", "error", err.Error())
		return nil
	}
	return &keyusage.Recorder{StateDir: cfg.Serve.StateDir, Log: log, Exe: exe}
}

// remoteAddr returns the client address from SSH_CONNECTION
// ("client port server port"); the zero Addr when it is missing or bad.
func remoteAddr(conn string) netip.Addr {
	f := strings.Fields(conn)
	if len(f) < 1 {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(f[0])
	if err != nil {
		return netip.Addr{}
	}
	return a
}

// serverName returns the address the client connected to, for the hint
// given to a person who logs in without a command.
func serverName(conn string) string {
	f := strings.Fields(conn)
	if len(f) >= 3 {
		if a, err := netip.ParseAddr(f[2]); err == nil {
			if a.Is6() && !a.Is4In6() {
				return "[" + a.String() + "]"
			}
			return a.Unmap().String()
		}
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "this-builder"
}
