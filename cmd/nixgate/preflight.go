package main

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
)

// runMode is how nixgate runs: serve mode, its own SSH server, or exec
// mode, a forced command of OpenSSH's sshd.
type runMode int

const (
	modeServe runMode = iota
	modeExec
)

// preflight checks, before Nix may run, that it can run the way cfg
// (read from source) says, and returns the account Nix runs as and, when
// nixgate runs as root, the credential to run it with. Serve mode runs it
// once at start-up and refuses to start on an error; exec mode, before
// every session, and refuses the session.
//
//   - The account. As root (serve mode only), it is the configured user,
//     looked up. Otherwise it is the account nixgate runs as, which must
//     be the configured one (see checkUser).
//   - The store (serve mode). A configured local?root= store directory
//     that is missing is created, owned by the account. Exec mode leaves
//     that to Nix, which creates it when an allowed command opens it.
//   - The store directory of the sandbox modes (sandbox.store_dir): it
//     must exist, in both modes (sandbox.CheckStoreDir); a mistyped one
//     is refused, never made.
//   - The sandbox. Serve mode finds nix-store in bin_dirs (direct), or
//     runs Nix inside the configured sandbox for real (sandbox.Check),
//     which needs nixgate to run as the account itself. Exec mode, run
//     directly or under proot, checks that the account cannot write its
//     own home and so change how sshd lets it in (userns and
//     nix-user-chroot make the home read-only themselves).
func preflight(cfg *policy.Config, source string, mode runMode) (sandbox.Account, *syscall.Credential, error) {
	account, cred, err := runAccount(cfg, source, mode)
	if err != nil {
		return sandbox.Account{}, nil, err
	}
	if cred == nil { // as root, the sandbox modes are refused below
		if err := sandbox.CheckStoreDir(cfg, account); err != nil {
			return sandbox.Account{}, nil, err
		}
	}
	if mode == modeExec {
		if sandbox.HomeMustBeReadOnly(cfg.Sandbox.Mode) {
			err = sandbox.CheckReadOnlyHome(account.Name, account.Home)
		}
	} else if err = prepareStore(cfg, cred); err == nil {
		switch {
		case cfg.Sandbox.Mode == policy.SandboxDirect:
			_, err = sandbox.Resolve(policy.NixStore, cfg.BinDirs(), account.Home)
		case cred != nil:
			err = fmt.Errorf("sandbox.mode %s is for a builder without root: run nixgate serve as %s itself, or use sandbox.mode = \"direct\" as root", cfg.Sandbox.Mode, cfg.User)
		default:
			err = sandbox.Check(cfg, account)
		}
	}
	if err != nil {
		return sandbox.Account{}, nil, err
	}
	return account, cred, nil
}

// runAccount returns the account Nix commands run as: as root in serve
// mode, the configured user with the credential children take (its uid,
// gid and groups); otherwise nixgate's own account, which must be the
// configured one. Either way uid 0 is refused (sandbox.RefuseRoot).
func runAccount(cfg *policy.Config, source string, mode runMode) (sandbox.Account, *syscall.Credential, error) {
	if mode == modeServe && os.Geteuid() == 0 {
		return sandbox.LookupAccount(cfg.User, true)
	}
	me, err := user.Current()
	if err != nil {
		return sandbox.Account{}, nil, fmt.Errorf("cannot tell which account this is: %w", err)
	}
	// Nix never runs as root, by the rule LookupAccount applies above,
	// whatever the account is called: with uid or effective uid 0, this
	// process is root (exec mode run by sshd as root).
	if err := sandbox.RefuseRoot(me.Username, uint64(min(os.Getuid(), os.Geteuid()))); err != nil {
		return sandbox.Account{}, nil, err
	}
	a := sandbox.Account{Name: me.Username, Home: me.HomeDir}
	if err := checkUser(cfg, source, a, mode); err != nil {
		return sandbox.Account{}, nil, err
	}
	return a, nil, nil
}

// checkUser refuses a configuration whose user is not a, the account
// nixgate runs as (without root): commands can only run as a.
func checkUser(cfg *policy.Config, source string, a sandbox.Account, mode runMode) error {
	if a.Name == cfg.User {
		return nil
	}
	fix := fmt.Sprintf("set user = %q", a.Name)
	if mode == modeServe {
		fix = "start nixgate as root or " + fix
	} else {
		fix = "authorize the key in " + cfg.User + "'s authorized_keys, or " + fix
	}
	return fmt.Errorf("running as %q, so commands can only run as %q, but %s says user = %q: %s", a.Name, a.Name, source, cfg.User, fix)
}

// prepareStore creates the directory of a configured local?root= store
// when it is missing, owned by the build user (cred; nil: nixgate's own).
func prepareStore(cfg *policy.Config, cred *syscall.Credential) error {
	root, ok := strings.CutPrefix(cfg.Nix.Store, "local?root=")
	if !ok || strings.ContainsAny(root, "&?") || !filepath.IsAbs(root) {
		return nil
	}
	if _, err := os.Stat(root); err == nil {
		return nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("creating the store directory: %w", err)
	}
	if cred != nil {
		return os.Chown(root, int(cred.Uid), int(cred.Gid))
	}
	return nil
}
