package main

import (
	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
)

// loadConfig loads and fully validates the configuration file at path.
func loadConfig(path string) (*policy.Config, error) {
	cfg, err := policy.Load(path)
	if err != nil {
		return nil, err
	}
	if err := keys.CheckConfig(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}
