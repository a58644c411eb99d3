package main

import (
	"fmt"
	"os"
	osuser "os/user"
	"strconv"

	"github.com/nixgate/nixgate/check"
	"github.com/nixgate/nixgate/config"
	"github.com/nixgate/nixgate/policy"
)

// Where a command's configuration comes from. The complete configuration
// is built in one place, config.Load; this file only picks the source.

const defaultConfigPath = "/etc/nixgate/nixgate.toml"

// configSource is where a configuration comes from: a file, or the
// embedded default (see embeddedDefault).
type configSource struct {
	// path is the configuration file; empty for the embedded default.
	path string
	// doc is the embedded default's text, when path is empty.
	doc string
	// listen, when not empty, replaces the configuration's listen
	// addresses (serve --listen).
	listen []string
}

// serveSource returns the configuration nixgate serve uses, which check,
// drain and usage use too: the file at path; without one, the default
// file when it exists; else, or with embedded, the embedded default.
func serveSource(path string, embedded bool, listen []string) (configSource, error) {
	if path == "" && !embedded {
		if _, err := os.Stat(defaultConfigPath); err == nil {
			path = defaultConfigPath
		}
	}
	src := configSource{path: path, listen: listen}
	if path == "" {
		doc, err := embeddedDefault()
		if err != nil {
			return configSource{}, err
		}
		src.doc = doc
	}
	return src, nil
}

// name names the source in messages: the file's path, or embeddedSource.
func (s configSource) name() string {
	if s.path == "" {
		return embeddedSource
	}
	return s.path
}

// embedded reports whether the source is the embedded default.
func (s configSource) embedded() bool { return s.path == "" }

// load returns the complete configuration (config.Load): the file, the
// keys of its authorized_keys file, every public key parsed.
func (s configSource) load() (*policy.Config, error) {
	var cfg *policy.Config
	var err error
	if s.embedded() {
		cfg, err = config.Parse(embeddedSource, []byte(s.doc))
	} else {
		cfg, err = config.Load(s.path)
	}
	if err == nil && len(s.listen) > 0 {
		cfg.Serve.Listen = s.listen
	}
	return cfg, err
}

// loadHeld is load for a command that acts on the configuration (serve
// at start and on every reload): a configuration whose files the build
// account, or anyone, can change is refused (heldFiles).
func (s configSource) loadHeld() (*policy.Config, error) {
	cfg, err := s.load()
	if err == nil && !s.embedded() {
		err = heldFiles(cfg, servingAs(cfg.User))
	}
	return cfg, err
}

// servingAs reports whether this process runs as the account user: a
// builder without root, whose serve (and keys, client-config) runs as
// its build account, with files of its own. (Exec mode always runs as
// the account, and never counts as this: its files are root's.)
func servingAs(user string) bool {
	u, err := osuser.Lookup(user)
	return err == nil && u.Uid == strconv.Itoa(os.Geteuid())
}

// heldFiles is why nixgate refuses cfg: a file of its own — the
// configuration, its keys file, the drain state — that the build
// account (where a build runs as it, unhidden) or anyone can change,
// as nixgate check reports it, with the fix; nil when none. With
// asAccount (serve run by the build account, whose files are its own)
// only what anyone can change.
func heldFiles(cfg *policy.Config, asAccount bool) error {
	for _, r := range check.Files(cfg, asAccount) {
		if r.Status == check.Fail {
			return fmt.Errorf("%s; fix: %s", r.Message, r.Fix)
		}
	}
	return nil
}

// settings returns the configuration without the keys of its
// authorized_keys file, which it does not read: for what must work while
// that file is being mended (drain, usage, keys revoke).
func (s configSource) settings() (*policy.Config, error) {
	if s.embedded() {
		return policy.Parse(embeddedSource, []byte(s.doc))
	}
	return policy.Load(s.path)
}
