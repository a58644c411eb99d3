package main

import (
	"github.com/nixgate/nixgate/config"
	"github.com/nixgate/nixgate/policy"
)

// loadConfig loads the complete configuration of the file at path (see
// config.Load).
func loadConfig(path string) (*policy.Config, error) { return config.Load(path) }
