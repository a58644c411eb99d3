package usage

import "github.com/nixgate/nixgate/policy"

// errorf returns one of usage's errors (policy.Errorf): "usage: " and the
// line a client or operator is shown.
func errorf(format string, a ...any) error { return policy.Errorf("usage", format, a...) }
