package main

import (
	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
)

// loadConfig loads and fully validates the configuration file at path,
// with the keys of its authorized_keys file.
func loadConfig(path string) (*policy.Config, error) {
	cfg, err := policy.Load(path)
	if err != nil {
		return nil, err
	}
	return completeConfig(cfg)
}

// completeConfig adds the keys of cfg's authorized_keys file and checks
// every public key.
func completeConfig(cfg *policy.Config) (*policy.Config, error) {
	if cfg.AuthorizedKeys != "" {
		specs, err := keys.LoadFile(cfg.AuthorizedKeys)
		if err != nil {
			return nil, err
		}
		if err := cfg.AddKeys(cfg.AuthorizedKeys, specs); err != nil {
			return nil, err
		}
	}
	if err := keys.CheckConfig(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}
