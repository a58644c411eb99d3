package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gliderssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
	"github.com/nixgate/nixgate/usage"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errorf("server closed")

// Options configure a Server.
type Options struct {
	// Config is the policy and serve configuration, as config.Load
	// returns it: the keys' public keys parsed. Required.
	Config *policy.Config
	// HostSigners are the host keys. Required: the server never makes up
	// an ephemeral key.
	HostSigners []gossh.Signer
	// Account is the account Nix commands run as.
	Account sandbox.Account
	// Credential, when not nil, is the uid, gid and groups children run
	// with (serve mode as root). Nil means children run as the server's
	// own user.
	Credential *syscall.Credential
	// Logger receives the audit log. Nil means slog.Default().
	Logger *slog.Logger
	// Metrics, when not nil, is updated as connections and sessions come
	// and go.
	Metrics *Metrics
	// Usage, when not nil, gets each key's sessions and refusals (the
	// usage store in state_dir). Nil records none.
	Usage *usage.Recorder
	// KeySource, when not nil, returns the key source of a configuration
	// (its [key_source] command), asked about each key the
	// configuration does not list; New and Reload call it. It returns
	// nil for a configuration without one.
	KeySource func(cfg *policy.Config) KeySource
	// KillGrace is how long a command has after SIGTERM before SIGKILL,
	// when its client goes away or the drain ends. Zero means 5 seconds.
	KillGrace time.Duration
}

// Server is nixgate's SSH server. Create it with New.
type Server struct {
	log     *slog.Logger
	grace   time.Duration
	account sandbox.Account
	cred    *syscall.Credential
	metrics *Metrics
	usage   *usage.Recorder
	// keySource makes the key source of each configuration put in
	// force; nil for none.
	keySource func(*policy.Config) KeySource

	state atomic.Pointer[state] // the configuration in force
	drain atomic.Int32          // the drain state last seen: drainUnknown, 0 or 1
	// health is the verdict of the last CheckHealth; nil before the
	// first, which refuses.
	health atomic.Pointer[admission.Health]
	// slots are the builder's build slots, shared by all sessions and
	// kept across reloads.
	slots admission.Slots

	healthMu      sync.Mutex // serializes CheckHealth
	greeted       time.Time  // when CheckHealth last greeted the daemon
	greetedSocket string     // the daemon socket it greeted

	ssh     *gliderssh.Server
	limiter *sourceLimiter
	nextID  atomic.Uint64

	mu       sync.Mutex
	closing  bool
	conns    map[*connState]struct{}
	sessions map[string]int // running sessions by key name
	procs    map[*sandbox.Process]struct{}
	live     map[*liveSession]struct{} // the Nix sessions running, for Status
	active   int                       // sessions started and not yet answered
	drained  chan struct{}             // closed when no session runs during shutdown
}

// KeySource answers which key an offered public key that the
// configuration does not list logs in as (package keysource runs the
// [key_source] command). Lookup returns nil, nil when the key is not
// one; an error refuses the key.
type KeySource interface {
	Lookup(user string, key gossh.PublicKey) (*policy.Key, error)
}

// state is one loaded configuration with its key index.
type state struct {
	engine *policy.Engine
	cfg    *policy.Config
	byFP   map[string]*policy.Key // SHA256 fingerprint -> key
	source KeySource              // nil without a key source
}

// newState indexes cfg's keys by the fingerprints config.Load parsed. A
// key with a public_key but no fingerprint, or a CA without its parsed
// key (a configuration that did not come from config.Load), is an error. So is a configuration in which no
// key has a public_key, when requireKey is set (starting a server nobody
// can use); on reload it is allowed, so that revoking the last key takes
// effect.
func newState(cfg *policy.Config, requireKey bool, source func(*policy.Config) KeySource) (*state, error) {
	if cfg == nil {
		return nil, errorf("nil Config")
	}
	st := &state{engine: policy.NewEngine(cfg), cfg: cfg, byFP: map[string]*policy.Key{}}
	if source != nil {
		st.source = source(cfg)
	}
	if len(cfg.KeySource.Command) > 0 && st.source == nil {
		return nil, errorf("[key_source] is set, and the server was given no way to run it (Options.KeySource)")
	}
	for i := range cfg.Keys {
		k := &cfg.Keys[i]
		if k.PublicKey == "" {
			continue
		}
		if k.Fingerprint == "" {
			return nil, errorf("key %q: its public_key was not parsed (load the configuration with config.Load)", k.Name)
		}
		st.byFP[k.Fingerprint] = k
	}
	for _, ca := range cfg.CAs {
		if ca.Key == nil {
			return nil, errorf("CA %q: its key was not parsed (load the configuration with config.Load)", ca.Name)
		}
	}
	if requireKey && !st.canLogIn() {
		return nil, errorf("no key has a public_key and there is no [[cas]], so nobody could log in")
	}
	return st, nil
}

// canLogIn reports whether any key or certificate may log in under st.
func (st *state) canLogIn() bool {
	return len(st.byFP) > 0 || len(st.cfg.CAs) > 0 || st.source != nil
}

// New returns a Server for o. It fails when o lacks a configuration, a
// host key, or any key with a public_key.
func New(o Options) (*Server, error) {
	if o.Config == nil {
		return nil, errorf("nil Config")
	}
	if len(o.HostSigners) == 0 {
		return nil, errorf("no host key")
	}
	st, err := newState(o.Config, true, o.KeySource)
	if err != nil {
		return nil, err
	}
	s := &Server{
		log:       o.Logger,
		account:   o.Account,
		cred:      o.Credential,
		metrics:   o.Metrics,
		usage:     o.Usage,
		keySource: o.KeySource,
		conns:     map[*connState]struct{}{},
		sessions:  map[string]int{},
		procs:     map[*sandbox.Process]struct{}{},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.grace = o.KillGrace
	if s.grace <= 0 {
		s.grace = 5 * time.Second
	}
	s.slots.OnChange = s.metrics.buildSlots
	s.state.Store(st)
	s.drain.Store(drainUnknown)
	s.CheckDrain()
	s.CheckHealth()
	s.limiter = newSourceLimiter()
	s.ssh = &gliderssh.Server{
		Version:                  "nixgate",
		HostSigners:              signers(o.HostSigners),
		Handler:                  s.handleSession,
		PublicKeyHandler:         s.publicKeyHandler,
		ServerConfigCallback:     s.serverConfig,
		ConnCallback:             s.connCallback,
		ConnectionFailedCallback: s.connectionFailed,
		PtyCallback:              s.ptyAllowed,
		ChannelHandlers: map[string]gliderssh.ChannelHandler{
			"session": s.sessionChannel,
			"default": s.refuseChannel,
		},
		RequestHandlers: map[string]gliderssh.RequestHandler{
			"default": s.globalRequest,
		},
		SubsystemHandlers: map[string]gliderssh.SubsystemHandler{},
	}
	return s, nil
}

// ptyAllowed lets only shell-role keys have a terminal.
func (s *Server) ptyAllowed(ctx gliderssh.Context, _ gliderssh.Pty) bool {
	c := connOf(ctx)
	return c != nil && s.roleOf(c) == policy.RoleShell
}

func signers(in []gossh.Signer) []gliderssh.Signer {
	out := make([]gliderssh.Signer, len(in))
	for i, s := range in {
		out[i] = s
	}
	return out
}

// Reload replaces the configuration for new connections and sessions;
// cfg is as config.Load returns it. Running sessions keep what they were
// started with. On error the old configuration stays in force. A configuration without any login key is
// put in force (nobody can log in): revoking the last key must work.
func (s *Server) Reload(cfg *policy.Config) error {
	st, err := newState(cfg, false, s.keySource)
	if err != nil {
		return err
	}
	if !st.canLogIn() {
		s.log.Warn("no key may log in any more", "config", cfg.Source)
	}
	s.state.Store(st)
	s.CheckDrain()
	s.slots.SetMax(cfg.Admission.MaxBuilds)
	return nil
}

// Config returns the configuration in force.
func (s *Server) Config() *policy.Config { return s.state.Load().cfg }

// Serve accepts connections on l until Shutdown or Close. It always
// returns a non-nil error; after Shutdown or Close, ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	err := s.ssh.Serve(l)
	if errors.Is(err, gliderssh.ErrServerClosed) {
		return ErrServerClosed
	}
	return err
}

// Shutdown stops accepting connections and new sessions, closes idle
// connections, and waits for running sessions to end until ctx is done;
// then it kills what still runs and closes every connection.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.drained = make(chan struct{})
	if s.active == 0 {
		close(s.drained)
	}
	drained := s.drained
	var idle []*connState
	for c := range s.conns {
		if c.sessions == 0 {
			idle = append(idle, c)
		}
	}
	s.mu.Unlock()
	// Closed without s.mu: closing takes it to forget the connection.
	for _, c := range idle {
		c.conn.Close()
	}
	go s.ssh.Shutdown(ctx) // closes the listeners
	select {
	case <-drained:
		s.ssh.Close()
		return nil
	case <-ctx.Done():
		s.killAll()
		s.ssh.Close()
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once, killing the
// running commands.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.killAll()
	return s.ssh.Close()
}

// killAll ends every running command: SIGTERM first, so that Nix stops
// its builds, then SIGKILL after killGrace.
func (s *Server) killAll() {
	s.mu.Lock()
	procs := make([]*sandbox.Process, 0, len(s.procs))
	for p := range s.procs {
		procs = append(procs, p)
		p.Signal(syscall.SIGTERM)
	}
	s.mu.Unlock()
	if len(procs) == 0 {
		return
	}
	time.Sleep(s.grace)
	for _, p := range procs {
		p.Signal(syscall.SIGKILL)
	}
}

// Running returns the number of running sessions.
func (s *Server) Running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

func (s *Server) connID() string {
	return fmt.Sprintf("c%d-%d", time.Now().Unix()%100000, s.nextID.Add(1))
}
