package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Request is what a client asks for: which key it authenticated with,
// from where, and the command string it sent.
type Request struct {
	// Key is the name of the key that completed authentication.
	Key string
	// Command is the raw command string from the SSH exec request or
	// SSH_ORIGINAL_COMMAND. Empty means no command (an interactive login).
	Command string
	// Remote is the client's address. The zero Addr means unknown, which
	// a key with From refuses.
	Remote netip.Addr
	// Now is the time the request is decided at. Zero means time.Now().
	Now time.Time

	inBootstrap bool
}

// AfterLixBootstrap returns the request for the command that Lix 2.93.0
// sent on stdin after its "bash" start-up; that command may not be "bash"
// again.
func (r Request) AfterLixBootstrap(cmd string) Request {
	r.Command = cmd
	r.inBootstrap = true
	return r
}

// Decision is the result of Engine.Decide. The zero Decision denies.
type Decision struct {
	// Allow reports whether the command may run.
	Allow bool
	// Reason is one line for the client and the log: why the command was
	// refused, or what is being run.
	Reason string
	// Key is the name of the key the decision is for; empty when the key
	// is unknown.
	Key string
	// Role is the key's role; empty when the key is unknown.
	Role Role
	// Invocation is the command the client asked for, as recognised.
	Invocation Invocation
	// Program is the Nix program to run; empty when denied.
	Program Program
	// Args are the arguments to give Program (argv without argv[0]): the
	// client's request narrowed by the key's role, with the store nixgate
	// chose.
	Args []string
	// NoCommand is set when the client sent no command at all.
	NoCommand bool
	// Shell is set for a shell-role key: run the account's login shell,
	// interactively when Command is empty, else with -c Command. Program
	// and Args are empty.
	Shell bool
	// Command is the command a shell-role key asked for.
	Command string
	// BuildLog, when set, is the derivation whose build log the key
	// asked for ("nixgate log DRV"): show the log kept of it for the key,
	// and run nothing. Program and Args are empty.
	BuildLog string
	// Protocol is the Nix protocol Program speaks on stdin and stdout,
	// which nixgate filters with Ops; zero when denied.
	Protocol Protocol
	// Ops decides each operation of Protocol the client sends.
	Ops OpPolicy
	// LixBootstrap is set when the client is Lix 2.93.0, which sends
	// "bash" and then the real command on stdin: play the dialogue with
	// ReadLixBootstrap and decide the command it returns. Allow is false.
	LixBootstrap bool
}

// Argv returns the argv to run with argv[0] set to bin, the resolved path
// of d.Program.
func (d Decision) Argv(bin string) []string {
	return append([]string{bin}, d.Args...)
}

// Engine decides requests against a Config. A nil Engine, or one with a
// nil Config, allows nothing.
type Engine struct {
	cfg *Config
}

// NewEngine returns an Engine for cfg.
func NewEngine(cfg *Config) *Engine { return &Engine{cfg: cfg} }

// Config returns the configuration the engine decides by.
func (e *Engine) Config() *Config {
	if e == nil {
		return nil
	}
	return e.cfg
}

// Decide decides req. Everything not explicitly allowed is denied:
// unknown and expired keys, keys used from outside their From networks,
// commands that are not exactly one of Nix's remote-store commands, and
// --store values the configuration does not allow.
func (e *Engine) Decide(req Request) Decision {
	if e == nil || e.cfg == nil {
		return deny("no configuration")
	}
	k := e.cfg.Key(req.Key)
	if k == nil {
		return deny(fmt.Sprintf("key %q is not configured", req.Key))
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	d := Decision{Key: k.Name, Role: k.Role}
	if k.Expired(now) {
		d.Reason = fmt.Sprintf("key %q expired on %s", k.Name, k.Expires.UTC().Format(time.RFC3339))
		return d
	}
	if !k.AllowsFrom(req.Remote) {
		if !req.Remote.IsValid() {
			d.Reason = fmt.Sprintf("key %q may only connect from %v, and the client address is unknown", k.Name, k.From)
		} else {
			d.Reason = fmt.Sprintf("key %q may not connect from %s", k.Name, req.Remote.Unmap())
		}
		return d
	}
	if k.Role == RoleShell {
		d.Allow, d.Shell, d.Command = true, true, req.Command
		if req.Command == "" {
			d.Reason = "allowed: interactive shell for role shell"
		} else {
			d.Reason = "allowed: command through the login shell for role shell"
		}
		return d
	}
	if k.Role == RoleBuild {
		if why := e.cfg.Sandbox.BuildKeysRefusal(); why != "" {
			d.Reason = why
			return d
		}
	}
	if req.Command == LixBootstrapCommand && !req.inBootstrap {
		d.LixBootstrap = true
		d.Reason = "Lix 2.93.0 start-up: the command follows on stdin"
		return d
	}
	argv, err := ParseCommand(req.Command)
	if errors.Is(err, ErrEmptyCommand) {
		d.NoCommand = true
		d.Reason = "no command: this account only serves Nix remote stores"
		return d
	}
	if err != nil {
		d.Reason = "command refused: " + Line(err)
		return d
	}
	if len(argv) >= 2 && argv[0] == "nixgate" && argv[1] == "log" {
		return logRequest(d, argv)
	}
	inv, err := MatchCommand(argv, e.cfg.BinDirs())
	if err != nil {
		d.Reason = "command refused: " + Line(err)
		return d
	}
	d.Invocation = inv
	return e.narrow(d, k, inv)
}

// narrow applies the key's role and the store settings to a recognised
// command.
func (e *Engine) narrow(d Decision, k *Key, inv Invocation) Decision {
	store := e.cfg.Nix.Store
	if inv.Store != "" {
		if inv.Store != e.cfg.Nix.Store && !slices.Contains(e.cfg.Nix.AllowedStores, inv.Store) {
			d.Reason = fmt.Sprintf("store %q is not allowed (see nix.allowed_stores)", inv.Store)
			return d
		}
		store = inv.Store
	}
	switch inv.Program {
	case NixStore:
		d.Args = []string{"--serve"}
		switch k.Role {
		case RoleBuild:
			if inv.Write {
				d.Args = append(d.Args, "--write")
			}
		case RoleSubstitute:
			// Read-only: nix-store itself refuses imports and builds
			// without --write.
		default:
			d.Reason = fmt.Sprintf("key %q has no role that may run nix-store", k.Name)
			return d
		}
	case NixDaemon:
		if k.Role != RoleBuild && k.Role != RoleSubstitute {
			d.Reason = fmt.Sprintf("key %q has no role that may run nix-daemon", k.Name)
			return d
		}
		// A substitute key's ops are filtered to the read-only ones.
		d.Args = []string{"--stdio"}
	default:
		d.Reason = "unknown program"
		return d
	}
	if store != "" {
		d.Args = append(d.Args, "--store", store)
	}
	if inv.ProcessOps {
		d.Args = append(d.Args, "--process-ops")
	}
	d.Allow = true
	d.Program = inv.Program
	d.Protocol = ProtocolServe
	if inv.Program == NixDaemon {
		d.Protocol = ProtocolWorker
	}
	d.Ops = OpPolicy{Key: k.Name, Role: k.Role, FullTrust: k.FullTrust, ClientSettings: e.cfg.ClientSettings(), Limits: k.Limits}
	d.Reason = fmt.Sprintf("allowed: %s %s for role %s", d.Program, strings.Join(d.Args, " "), k.Role)
	return d
}

func deny(reason string) Decision { return Decision{Reason: reason} }

// logRequest decides "nixgate log DRV": any key but the operator's
// (which has a shell) may read the build logs kept for it, and only
// those; argv must be exactly that, with DRV a derivation's store path.
func logRequest(d Decision, argv []string) Decision {
	if len(argv) != 3 || !ValidDrvPath(argv[2]) {
		d.Reason = "command refused: want exactly nixgate log /nix/store/HASH-NAME.drv (the derivation whose build log to show)"
		return d
	}
	d.Allow, d.BuildLog = true, argv[2]
	d.Reason = fmt.Sprintf("allowed: the build log of %s kept for key %q", argv[2], d.Key)
	return d
}
