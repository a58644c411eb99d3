package main

import (
	"os"

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

// settings returns the configuration without the keys of its
// authorized_keys file, which it does not read: for what must work while
// that file is being mended (drain, usage, keys revoke).
func (s configSource) settings() (*policy.Config, error) {
	if s.embedded() {
		return policy.Parse(embeddedSource, []byte(s.doc))
	}
	return policy.Load(s.path)
}
