package policy

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// ServeConfig holds the settings only serve mode uses. Its zero value is
// not usable; Load fills in the defaults.
type ServeConfig struct {
	// Listen are the addresses (host:port) to accept connections on.
	// Default: DefaultListen. Ignored under systemd socket activation.
	Listen []string
	// HostKeys are paths of private host keys in OpenSSH format. Empty
	// means one ed25519 key, generated once into StateDir.
	HostKeys []string
	// StateDir holds what serve mode keeps between starts (the generated
	// host key). Default: DefaultStateDir.
	StateDir string
	// Limits bound what clients may use.
	Limits Limits
	// MetricsListen is the address of the Prometheus metrics listener:
	// host:port, or "unix:" and the absolute path of a socket only
	// serve's user may connect to (mode 0600; out of reach of builds on
	// this machine, which may reach its loopback). Empty means none.
	MetricsListen string
}

// Limits bound connections and sessions in serve mode. Load fills in the
// defaults, which are meant to be safe on a public port.
type Limits struct {
	// LoginGraceTime is how long a connection may take to authenticate.
	LoginGraceTime time.Duration
	// MaxAuthTries is how many authentication attempts a connection gets.
	MaxAuthTries int
	// MaxStartups is how many connections may be unauthenticated at once;
	// more are dropped.
	MaxStartups int
	// PerSourceMaxStartups is how many of those may come from one address.
	PerSourceMaxStartups int
	// PerSourceRate is how many new connections one address may open per
	// minute (bursts of half that are allowed).
	PerSourceRate int
	// IdleTimeout closes an authenticated connection that has had no
	// session for this long.
	IdleTimeout time.Duration
	// MaxSessionsPerConn is how many sessions one connection may have open.
	MaxSessionsPerConn int
	// DrainTimeout is how long running sessions may go on after SIGTERM.
	DrainTimeout time.Duration
	// KeepaliveInterval is how often serve asks the client of a
	// connection with a session whether it is still there
	// (keepalive@openssh.com, as OpenSSH's ClientAliveInterval): the
	// traffic keeps NATs and firewalls from dropping a connection whose
	// build is silent, and a client that stops answering is found. Zero
	// sends none.
	KeepaliveInterval time.Duration
	// KeepaliveCountMax is how many keepalives may go unanswered before
	// the connection is closed, its sessions' Nix stopped and their build
	// slots given back: a client gone without a word is found within
	// KeepaliveInterval × (KeepaliveCountMax+1).
	KeepaliveCountMax int
}

// Defaults for serve mode.
var (
	DefaultListen   = []string{"0.0.0.0:22", "[::]:22"}
	DefaultStateDir = "/var/lib/nixgate"
	DefaultLimits   = Limits{
		LoginGraceTime:       30 * time.Second,
		MaxAuthTries:         6,
		MaxStartups:          64,
		PerSourceMaxStartups: 8,
		PerSourceRate:        120,
		IdleTimeout:          10 * time.Minute,
		MaxSessionsPerConn:   10,
		DrainTimeout:         5 * time.Minute,
		KeepaliveInterval:    30 * time.Second,
		KeepaliveCountMax:    3,
	}
)

// fileServe is the shape of the serve settings in the file.
type fileServe struct {
	Listen   []string   `toml:"listen"`
	HostKeys []string   `toml:"host_keys"`
	StateDir string     `toml:"state_dir"`
	Limits   fileLimits `toml:"limits"`
	Metrics  struct {
		Listen string `toml:"listen"`
	} `toml:"metrics"`
}

type fileLimits struct {
	LoginGraceTime       string `toml:"login_grace_time"`
	MaxAuthTries         *int   `toml:"max_auth_tries"`
	MaxStartups          *int   `toml:"max_startups"`
	PerSourceMaxStartups *int   `toml:"per_source_max_startups"`
	PerSourceRate        *int   `toml:"per_source_rate"`
	IdleTimeout          string `toml:"idle_timeout"`
	MaxSessionsPerConn   *int   `toml:"max_sessions_per_connection"`
	DrainTimeout         string `toml:"drain_timeout"`
	KeepaliveInterval    string `toml:"keepalive_interval"`
	KeepaliveCountMax    *int   `toml:"keepalive_count_max"`
}

func (v *validator) serve(f *fileServe) ServeConfig {
	s := ServeConfig{Listen: f.Listen, HostKeys: f.HostKeys, StateDir: f.StateDir, Limits: DefaultLimits, MetricsListen: f.Metrics.Listen}
	if len(s.Listen) == 0 {
		s.Listen = DefaultListen
	}
	for i, a := range f.Listen {
		if _, _, err := net.SplitHostPort(a); err != nil {
			v.fail(fmt.Sprintf("listen[%d]", i), "%q is not host:port", a)
		}
	}
	if s.MetricsListen != "" {
		if path, ok := strings.CutPrefix(s.MetricsListen, "unix:"); ok {
			if path == "" || path[0] != '/' {
				v.fail("metrics.listen", "%q: a unix socket needs an absolute path (unix:/run/nixgate/metrics.sock)", s.MetricsListen)
			}
		} else if _, _, err := net.SplitHostPort(s.MetricsListen); err != nil {
			v.fail("metrics.listen", "%q is not host:port or unix:/path", s.MetricsListen)
		}
	}
	for i, p := range f.HostKeys {
		if p == "" || p[0] != '/' {
			v.fail(fmt.Sprintf("host_keys[%d]", i), "%q must be an absolute path", p)
		}
	}
	if s.StateDir == "" {
		s.StateDir = DefaultStateDir
	}
	l := &s.Limits
	v.duration("limits.login_grace_time", f.Limits.LoginGraceTime, &l.LoginGraceTime)
	v.duration("limits.idle_timeout", f.Limits.IdleTimeout, &l.IdleTimeout)
	v.duration("limits.drain_timeout", f.Limits.DrainTimeout, &l.DrainTimeout)
	if f.Limits.KeepaliveInterval == "0" || f.Limits.KeepaliveInterval == "0s" {
		l.KeepaliveInterval = 0
	} else {
		v.duration("limits.keepalive_interval", f.Limits.KeepaliveInterval, &l.KeepaliveInterval)
	}
	v.positive("limits.keepalive_count_max", f.Limits.KeepaliveCountMax, &l.KeepaliveCountMax)
	v.positive("limits.max_auth_tries", f.Limits.MaxAuthTries, &l.MaxAuthTries)
	v.positive("limits.max_startups", f.Limits.MaxStartups, &l.MaxStartups)
	v.positive("limits.per_source_max_startups", f.Limits.PerSourceMaxStartups, &l.PerSourceMaxStartups)
	v.positive("limits.per_source_rate", f.Limits.PerSourceRate, &l.PerSourceRate)
	v.positive("limits.max_sessions_per_connection", f.Limits.MaxSessionsPerConn, &l.MaxSessionsPerConn)
	return s
}

func (v *validator) duration(path, s string, dst *time.Duration) {
	if s == "" {
		return
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		v.fail(path, "%q is not a positive duration such as \"30s\" or \"10m\"", s)
		return
	}
	*dst = d
}

func (v *validator) positive(path string, n *int, dst *int) {
	if n == nil {
		return
	}
	if *n <= 0 {
		v.fail(path, "%d must be positive", *n)
		return
	}
	*dst = *n
}
