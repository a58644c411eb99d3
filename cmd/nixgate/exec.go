package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/user"
	"strings"

	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
)

const execExample = `Runs as an OpenSSH forced command: decides the command the client sent
(SSH_ORIGINAL_COMMAND) for the key named by --key, then replaces itself with
the allowed Nix command. Put it in the build account's authorized_keys:

  restrict,command="/usr/local/bin/nixgate exec --config /etc/nixgate/nixgate.toml --key ci" ssh-ed25519 AAAA… ci@example

Example (what sshd does for a client running nix store ping --store ssh://builder):
  SSH_ORIGINAL_COMMAND='nix-store --serve --write' nixgate exec --config /etc/nixgate/nixgate.toml --key ci`

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

// execMode decides the forced command and, when allowed, replaces the
// process with it. It returns only on refusal or failure.
func execMode(configPath, keyName string, getenv func(string) string, stderr io.Writer) int {
	cfg, err := loadConfig(configPath)
	if err != nil {
		log, closeLog := openLog("")
		defer closeLog()
		return refuse(stderr, log, "configuration error, nothing was run: "+err.Error(), "mode", "exec", "key", keyName)
	}
	log, closeLog := openLog(cfg.Log.File)
	defer closeLog()
	raw := getenv("SSH_ORIGINAL_COMMAND")
	remote := remoteAddr(getenv("SSH_CONNECTION"))
	log = log.With("mode", "exec", "key", keyName, "remote", remote.String(), "command", raw)

	u, err := user.Current()
	if err != nil {
		return refuse(stderr, log, "cannot tell which account this is: "+err.Error())
	}
	if u.Username != cfg.User {
		return refuse(stderr, log, fmt.Sprintf("running as %q, but %s says user = %q", u.Username, configPath, cfg.User))
	}
	account := sandbox.Account{Name: u.Username, Home: u.HomeDir}
	// The sandbox modes make the home read-only themselves; run directly,
	// the account must not be able to write it.
	if cfg.Sandbox.Mode == policy.SandboxDirect {
		if err := sandbox.CheckReadOnlyHome(account.Name, account.Home); err != nil {
			return refuse(stderr, log, "refused: "+strings.TrimPrefix(err.Error(), "sandbox: "))
		}
	}

	engine := policy.NewEngine(cfg)
	req := policy.Request{Key: keyName, Command: raw, Remote: remote}
	d := engine.Decide(req)
	if d.LixBootstrap {
		cmd, err := policy.ReadLixBootstrap(os.Stdin, os.Stdout)
		if err != nil {
			return refuse(stderr, log, "refused: "+strings.TrimPrefix(err.Error(), "policy: "), "role", d.Role)
		}
		req = req.AfterLixBootstrap(cmd)
		log = log.With("lix_command", cmd)
		d = engine.Decide(req)
	}
	log = log.With("role", d.Role)
	if d.NoCommand {
		return refuse(stderr, log, fmt.Sprintf("this account only serves Nix, there is no shell: use it from Nix, e.g. nix store ping --store ssh://%s@%s", cfg.User, serverName(getenv("SSH_CONNECTION"))), "decision", "deny")
	}
	if d.Shell {
		return refuse(stderr, log, "refused: the shell role is for serve mode; under OpenSSH, give the operator's key a line without command=", "decision", "deny")
	}
	if !d.Allow {
		return refuse(stderr, log, "refused: "+d.Reason, "decision", "deny")
	}
	c, err := sandbox.Prepare(cfg, d, account)
	if err != nil {
		return refuse(stderr, log, "cannot run the command: "+strings.TrimPrefix(err.Error(), "sandbox: "), "decision", "error")
	}
	log.Info("allowed", "decision", "allow", "reason", d.Reason, "argv", c.Argv, "sandbox", cfg.Sandbox.Mode)
	if c.Namespace {
		// A new user namespace needs a new process: run it and pass on
		// its exit status.
		closeLog()
		code, err := c.RunForeground()
		if err != nil {
			log, closeLog = openLog(cfg.Log.File)
			defer closeLog()
			return refuse(stderr, log, "cannot run the command: "+strings.TrimPrefix(err.Error(), "sandbox: "), "decision", "error")
		}
		return code
	}
	closeLog()
	err = c.Exec()
	log, closeLog = openLog(cfg.Log.File)
	defer closeLog()
	return refuse(stderr, log, "cannot run the command: "+strings.TrimPrefix(err.Error(), "sandbox: "), "decision", "error")
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
