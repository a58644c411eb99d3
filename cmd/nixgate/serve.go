package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
	gossh "golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/gateway"
	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/keysource"
	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
	keyusage "github.com/nixgate/nixgate/usage"
)

// healthInterval is how often serve checks whether Nix on the builder
// works: often enough that a full disk or a stopped daemon sends builds
// elsewhere within seconds, rarely enough to cost nothing (a statfs, a
// stat, and for the daemon's store one short connection).
const healthInterval = 2 * time.Second

const serveExample = `Runs nixgate as the builder's SSH server. Only the configured client keys
may log in, as the configured user, and only to run Nix's own commands.

Without --config it reads ` + defaultConfigPath + `, and when that does
not exist (or with --embedded) it starts on an embedded default for trying
it out: 127.0.0.1:2222, everything under ./.state/serve, client keys from
./.state/serve/authorized_keys, one line per key. With no key there yet, it
generates a client key pair, ./.state/serve/client_ed25519, authorizes it
(role build) and prints the Nix command that uses it.

Examples:
  nixgate serve --embedded                         # what make run runs
  nixgate serve --embedded --listen 127.0.0.1:2200 # when 2222 is taken
  nixgate serve --config /etc/nixgate/nixgate.toml

SIGHUP, or a change to the configuration or keys file, reloads them (a
broken file is reported and the old configuration stays); SIGTERM stops
accepting, lets running sessions finish for limits.drain_timeout, then
ends them.`

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", "[--config FILE | --embedded] [--listen HOST:PORT]…", serveExample, stdout, stderr)
	configPath := fs.String("config", "", "the nixgate configuration `FILE` (default "+defaultConfigPath+", or the embedded default when that does not exist)")
	embedded := fs.Bool("embedded", false, "use the embedded default configuration (state in ./.state/serve), even when "+defaultConfigPath+" exists")
	var listen listFlag
	fs.Var(&listen, "listen", "listen on `HOST:PORT` instead of the configuration's addresses (repeatable)")
	if ok, code := parseFlags(fs, args, stdout); !ok {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "nixgate serve: "+format+"\n", a...)
		return exitRefused
	}
	if *embedded && *configPath != "" {
		fmt.Fprintln(stderr, "nixgate serve: give --config or --embedded, not both")
		return exitUsage
	}
	src, err := serveSource(*configPath, *embedded, listen)
	if err != nil {
		return fail("%v", err)
	}
	cfg, identity, err := startConfig(src, stderr)
	if err != nil {
		return fail("%v", err)
	}
	log, closeLog, err := serveLog(cfg.Log.File, stderr)
	if err != nil {
		return fail("%v", err)
	}
	defer closeLog()
	defer cpuProfile()()
	account, cred, err := preflight(cfg, src.name(), modeServe)
	if err != nil {
		return fail("%s", policy.Line(err))
	}
	if path, dirs, err := sandbox.Which(cfg, account, policy.NixStore); err == nil {
		log.Info("nix", "nix-store", path, "bin_dirs", dirs, "sandbox", cfg.Sandbox.Mode, "why", "the first of bin_dirs that holds it")
	}
	signers, err := hostSigners(cfg, log)
	if err != nil {
		return fail("%v", err)
	}
	var metrics *gateway.Metrics
	if cfg.Serve.MetricsListen != "" {
		metrics = gateway.NewMetrics()
	}
	srv, err := gateway.New(gateway.Options{Config: cfg, HostSigners: signers, Account: account, Credential: cred, Logger: log, Metrics: metrics,
		Usage: &keyusage.Recorder{StateDir: cfg.Serve.StateDir, Log: log}, KeySource: keySourceOf(log)})
	if err != nil {
		return fail("%v", err)
	}
	// Watched from before the server is ready: a change made as soon as
	// it is, is a change.
	changed, drainChanged := watchConfig(srv, src.name()), watchDrain(srv)
	defer checkHealth(srv)()
	listeners, err := serveListeners(cfg)
	if err != nil {
		return fail("%v", err)
	}
	if metrics != nil {
		if err := serveMetrics(cfg.Serve.MetricsListen, metrics, log); err != nil {
			return fail("metrics listener: %v", err)
		}
	}
	if sl, err := metricsListener("unix:" + statusSocket(cfg.Serve.StateDir)); err != nil {
		log.Warn("nixgate status will not see this server", "socket", statusSocket(cfg.Serve.StateDir), "error", err.Error())
	} else {
		defer sl.Close()
		go serveStatus(sl, srv)
	}
	errc := make(chan error, len(listeners))
	announce(cfg, log, stderr)
	for _, l := range listeners {
		log.Info("listening", "addr", l.Addr().String(), "user", cfg.User, "config", src.name())
		go func() { errc <- srv.Serve(l) }()
	}
	writeKnownHosts(cfg, listeners, signers, log)
	fmt.Fprintln(stderr, connectHint(cfg, listeners, identity))
	daemon.SdNotify(false, daemon.SdNotifyReady)
	if err := serveUntilStopped(srv, src.loadHeld, changed, drainChanged, errc, log, stderr); err != nil {
		return fail("%v", err)
	}
	return exitOK
}

// serveUntilStopped runs until SIGTERM or SIGINT, which shut srv down,
// or until one of its listeners fails (errc), which is the error
// returned. On SIGHUP or a change to the configuration or keys file it
// reloads the configuration with load; on a change to the drain file,
// srv looks at it.
func serveUntilStopped(srv *gateway.Server, load func() (*policy.Config, error), changed, drainChanged <-chan struct{}, errc <-chan error, log *slog.Logger, stderr io.Writer) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	for {
		select {
		case <-changed:
			log.Info("configuration or keys file changed")
			reload(srv, load, log, stderr)
		case <-drainChanged:
			srv.CheckDrain()
		case err := <-errc:
			if errors.Is(err, gateway.ErrServerClosed) {
				return nil
			}
			return err
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reload(srv, load, log, stderr)
				continue
			}
			shutdown(srv, sig, log)
			return nil
		}
	}
}

// hostSigners loads serve mode's host keys (see keys.LoadHostKeys) and
// logs their fingerprints.
func hostSigners(cfg *policy.Config, log *slog.Logger) ([]gossh.Signer, error) {
	signers, generated, err := keys.LoadHostKeys(cfg.Serve.HostKeys, cfg.Serve.StateDir)
	if err != nil {
		return nil, err
	}
	for _, s := range signers {
		log.Info("host key", "type", s.PublicKey().Type(), "fingerprint", keys.Fingerprint(s.PublicKey()), "generated", generated)
	}
	return signers, nil
}

// startConfig loads the configuration serve starts on. On the embedded
// default, with no key that may log in yet, it first makes and
// authorizes a client key of its own (see embeddedClientKey) and returns
// that key's private key file as identity; else identity is "". It fails
// when no key may log in.
func startConfig(src configSource, stderr io.Writer) (cfg *policy.Config, identity string, err error) {
	if cfg, err = src.loadHeld(); err != nil {
		return nil, "", err
	}
	if src.embedded() {
		// Trying it out. The state directory is open to all: as root,
		// Nix runs as nobody in a store there.
		if err := os.MkdirAll(cfg.Serve.StateDir, 0o755); err != nil {
			return nil, "", err
		}
		if identity, err = embeddedClientKey(cfg, stderr); err != nil {
			return nil, "", err
		}
		if cfg, err = src.loadHeld(); err != nil {
			return nil, "", err
		}
	}
	switch {
	case hasLoginKey(cfg), len(cfg.CAs) > 0, len(cfg.KeySource.Command) > 0:
		return cfg, identity, nil
	case src.embedded():
		return nil, "", fmt.Errorf("no key may log in: add one line per client key to %s, such as role=\"build\" ssh-ed25519 AAAA… you@laptop", cfg.AuthorizedKeys)
	}
	if cfg.AuthorizedKeys != "" {
		if _, err := os.Stat(cfg.AuthorizedKeys); errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("no key may log in: the authorized_keys file %s that %s names does not exist: fix the path there (a typo?), or create it with one line per client key, such as role=\"build\" ssh-ed25519 AAAA… you@laptop", cfg.AuthorizedKeys, src.name())
		}
	}
	return nil, "", fmt.Errorf("no key may log in: add one line per client key to %s, such as role=\"build\" ssh-ed25519 AAAA… you@laptop, or a [[keys]] entry with public_key to %s", orNone(cfg.AuthorizedKeys), src.name())
}

// cpuProfile starts a CPU profile to the file NIXGATE_CPUPROFILE names,
// for finding where time goes, and returns what stops it.
func cpuProfile() (stop func()) {
	p := os.Getenv("NIXGATE_CPUPROFILE")
	if p == "" {
		return func() {}
	}
	f, err := os.Create(p)
	if err != nil || pprof.StartCPUProfile(f) != nil {
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// checkHealth checks, every healthInterval until the returned stop is
// called, whether Nix on the builder works (the store writable, free
// space above min_free, the daemon answering): off the sessions' path,
// which read the last verdict.
func checkHealth(srv *gateway.Server) (stop func()) {
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(healthInterval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				srv.CheckHealth()
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

// statusSocket is where serve answers nixgate status: a socket in
// state_dir only serve's user may use.
func statusSocket(stateDir string) string { return filepath.Join(stateDir, "status.sock") }

// serveStatus answers each connection to l with srv's status, in JSON,
// and closes it.
func serveStatus(l net.Listener, srv *gateway.Server) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			json.NewEncoder(c).Encode(srv.Status())
		}()
	}
}

// serveMetrics serves the Prometheus metrics on addr.
func serveMetrics(addr string, metrics *gateway.Metrics, log *slog.Logger) error {
	ml, err := metricsListener(addr)
	if err != nil {
		return err
	}
	ms := &http.Server{Handler: metrics.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	go ms.Serve(ml)
	log.Info("metrics", "listen", ml.Addr().String())
	return nil
}

// metricsListener listens on addr: host:port, or unix:PATH, a socket
// of mode 0600 (a stale socket there from an earlier start is replaced;
// any other file is not).
func metricsListener(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		return net.Listen("tcp", addr)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		os.Remove(path)
	}
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// shutdown stops srv after sig: no new connections, running sessions
// finish for limits.drain_timeout, then what still runs is ended.
func shutdown(srv *gateway.Server, sig os.Signal, log *slog.Logger) {
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	drain := srv.Config().Serve.Limits.DrainTimeout
	log.Info("shutting down", "signal", sig.String(), "running", srv.Running(), "drain_timeout", drain.String())
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	err := srv.Shutdown(ctx)
	cancel()
	if err != nil {
		log.Warn("drain timeout: running sessions were ended", "reason", err.Error())
	}
	log.Info("stopped")
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func orNone(s string) string {
	if s == "" {
		return "an authorized_keys file (set authorized_keys)"
	}
	return s
}

// serveListeners returns the sockets systemd passed (socket activation),
// or listens on cfg's addresses.
func serveListeners(cfg *policy.Config) ([]net.Listener, error) {
	ls, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	var out []net.Listener
	for _, l := range ls {
		if l != nil {
			out = append(out, l)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	out, err = gateway.Listen(cfg.Serve.Listen)
	if err != nil {
		return nil, fmt.Errorf("%s (is another sshd or nixgate on it? nixgate serve --listen HOST:PORT listens elsewhere)", policy.Line(err))
	}
	return out, nil
}

// writeKnownHosts writes state_dir/known_hosts with the host keys under
// every name a client on this host may use for the listening addresses,
// for clients to pin.
func writeKnownHosts(cfg *policy.Config, ls []net.Listener, signers []gossh.Signer, log *slog.Logger) {
	var names []string
	for _, l := range ls {
		for _, addr := range clientAddrs(l.Addr()) {
			n := addr
			if host, port, err := net.SplitHostPort(addr); err == nil {
				p, _ := strconv.Atoi(port)
				n = keys.KnownHostsName(host, p)
			}
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	var b strings.Builder
	for _, s := range signers {
		b.WriteString(keys.KnownHostsLine(strings.Join(names, ","), s.PublicKey()) + "\n")
	}
	p := filepath.Join(cfg.Serve.StateDir, "known_hosts")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		log.Warn("could not write known_hosts", "path", p, "reason", err.Error())
	}
}

// clientAddrs returns the host:port addresses a client uses to reach a
// listener on a: a itself, or for a wildcard (0.0.0.0, [::]) the loopback
// addresses and this host's name, the first of them the one to try.
func clientAddrs(a net.Addr) []string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return []string{a.String()}
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsUnspecified() {
		return []string{a.String()}
	}
	// A [::] listener may be dual-stack, so 127.0.0.1 reaches it too.
	out := []string{net.JoinHostPort("127.0.0.1", port)}
	if ip.To4() == nil {
		out = append(out, net.JoinHostPort("::1", port))
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		out = append(out, net.JoinHostPort(h, port))
	}
	return out
}

// connectHint tells a person how to reach the server from Nix: the first
// address a client on this host can use, and the command to try. identity
// is the client's private key file to name, or "".
func connectHint(cfg *policy.Config, ls []net.Listener, identity string) string {
	addr := clientAddrs(ls[0].Addr())[0]
	host, port, _ := net.SplitHostPort(addr)
	var on []string
	for _, l := range ls {
		on = append(on, l.Addr().String())
	}
	where := addr
	if len(on) > 1 || on[0] != addr {
		where += " (listening on " + strings.Join(on, ", ") + ")"
	}
	var opts []string
	if port != "22" {
		opts = append(opts, "-p "+port)
	}
	with := ""
	if identity == "" {
		// A real configuration: the client's private key is the
		// person's, not serve's to name.
		identity = "KEY"
		with = ", KEY the private half of a key in " + cfg.Source
	}
	opts = append(opts, "-i "+identity, "-o IdentitiesOnly=yes")
	knownHosts := filepath.Join(cfg.Serve.StateDir, "known_hosts")
	opts = append(opts, "-o UserKnownHostsFile="+knownHosts)
	hint := fmt.Sprintf("nixgate serve: ready on %s; try%s:\n  NIX_SSHOPTS=%q nix --extra-experimental-features nix-command store ping --store ssh://%s@%s",
		where, with, strings.Join(opts, " "), cfg.User, host)
	if fi, err := os.Stat(cfg.Serve.StateDir); err == nil && fi.Mode().Perm()&0o005 != 0o005 {
		hint += fmt.Sprintf("\n  (%s is root's to read here: a client needs its lines, which nixgate client-config prints)", knownHosts)
	}
	return hint
}

// keySourceOf returns the gateway's maker of key sources: the
// [key_source] command of each configuration, run by package keysource.
func keySourceOf(log *slog.Logger) func(*policy.Config) gateway.KeySource {
	return func(cfg *policy.Config) gateway.KeySource {
		if s := keysource.New(cfg, log); s != nil {
			return s
		}
		return nil
	}
}
