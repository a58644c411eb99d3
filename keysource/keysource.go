// Package keysource runs serve mode's [key_source] command, as OpenSSH
// runs an AuthorizedKeysCommand: for a key a client offers that the
// configuration does not list, the command is given the user, the key's
// type, fingerprint and base64 form, and answers keys-file lines
// (nixgate's authorized_keys syntax, role= and all); the line with the
// offered key, if any, is the key it logs in as. The command runs
// without a shell, with a clean environment and no stdin, for at most
// the configured timeout; its stderr is logged; its answers, keys or
// none, are cached for the configured time. Whatever goes wrong (a
// timeout, a non-zero exit, an answer that does not parse, a name of the
// configuration's) refuses the key: there is no fallback that lets it in.
package keysource

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/config"
	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
)

// MaxAnswer bounds what the command may print: more is an error.
const MaxAnswer = 1 << 20

// maxStderr bounds how much of the command's stderr is logged.
const maxStderr = 16 << 10

// maxRuns bounds how many runs of the command go at once; a lookup waits
// for one for at most the timeout.
const maxRuns = 4

// Source answers lookups for one configuration. Create it with New.
type Source struct {
	cfg *policy.Config
	log *slog.Logger
	// now is the clock of the cache; time.Now when nil.
	now func() time.Time

	runs chan struct{}

	mu    sync.Mutex
	cache map[string]answer // user and fingerprint -> answer
}

// answer is one cached answer: the key, or nil for none.
type answer struct {
	key   *policy.Key
	until time.Time
}

// New returns the Source of cfg's [key_source]; nil when cfg has no key
// source command. A nil log means slog.Default().
func New(cfg *policy.Config, log *slog.Logger) *Source {
	if cfg == nil || len(cfg.KeySource.Command) == 0 {
		return nil
	}
	if log == nil {
		log = slog.Default()
	}
	return &Source{cfg: cfg, log: log, runs: make(chan struct{}, maxRuns), cache: map[string]answer{}}
}

// Lookup returns the key that key logs in as for user, by the command's
// answer: nil when the answer has no line for key. It fails when the
// command cannot run, times out, exits non-zero, or answers what does
// not parse or validate; a failure is not cached. A nil Source answers
// nil.
func (s *Source) Lookup(user string, key gossh.PublicKey) (*policy.Key, error) {
	if s == nil {
		return nil, nil
	}
	fp := keys.Fingerprint(key)
	id := user + " " + fp
	now := s.clock()
	s.mu.Lock()
	if a, ok := s.cache[id]; ok && now.Before(a.until) {
		s.mu.Unlock()
		return a.key, nil
	}
	s.mu.Unlock()
	k, err := s.run(user, key, fp)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.cache[id] = answer{key: k, until: s.clock().Add(s.cfg.KeySource.Cache)}
	for c, a := range s.cache {
		if !now.Before(a.until) {
			delete(s.cache, c)
		}
	}
	s.mu.Unlock()
	return k, nil
}

func (s *Source) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// run runs the command for key and reads its answer.
func (s *Source) run(user string, key gossh.PublicKey, fp string) (*policy.Key, error) {
	ks := s.cfg.KeySource
	ctx, cancel := context.WithTimeout(context.Background(), ks.Timeout)
	defer cancel()
	select {
	case s.runs <- struct{}{}:
		defer func() { <-s.runs }()
	case <-ctx.Done():
		return nil, errorf("%d runs of the key source command are going already, for %v", maxRuns, ks.Timeout)
	}
	b64 := strings.Fields(keys.AuthorizedKey(key))[1]
	argv := ks.KeySourceArgv(user, key.Type(), fp, b64)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var stdout limited
	stdout.max = MaxAnswer
	var stderr limited
	stderr.max = maxStderr
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	s.logStderr(argv[0], fp, stderr.buf.Bytes())
	switch {
	case ctx.Err() != nil:
		return nil, errorf("the key source command did not answer within %v", ks.Timeout)
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, errorf("the key source command failed (%v)", ee.ProcessState)
		}
		return nil, errorf("the key source command: %v", err)
	case stdout.over:
		return nil, errorf("the key source command answered more than %d bytes", MaxAnswer)
	}
	k, err := config.AnswerKey(s.cfg, "key source "+argv[0], stdout.buf.Bytes(), fp)
	if err != nil {
		return nil, errorf("the key source command's answer: %s", policy.Line(err))
	}
	name := ""
	if k != nil {
		name = k.Name
	}
	s.log.Info("key source answered", "fingerprint", fp, "key", name, "duration", time.Since(start).String())
	return k, nil
}

// logStderr logs each line the command wrote to stderr.
func (s *Source) logStderr(prog, fp string, data []byte) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			s.log.Warn("key source stderr", "command", prog, "fingerprint", fp, "line", line)
		}
	}
}

// limited is a buffer that keeps at most max bytes and notes whether
// more came.
type limited struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); len(p) > room {
		l.over = true
		l.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return l.buf.Write(p)
}

// errorf returns one of keysource's errors: "keysource: " and the line.
func errorf(format string, a ...any) error { return policy.Errorf("keysource", format, a...) }
