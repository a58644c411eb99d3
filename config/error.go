package config

import "github.com/nixgate/nixgate/policy"

// errorf returns one of config's errors (policy.Errorf): "config: " and the
// line a client or operator is shown.
func errorf(format string, a ...any) error { return policy.Errorf("config", format, a...) }
