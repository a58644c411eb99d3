package gateway

import "github.com/nixgate/nixgate/policy"

// errorf returns one of gateway's errors (policy.Errorf): "gateway: " and the
// line a client or operator is shown.
func errorf(format string, a ...any) error { return policy.Errorf("gateway", format, a...) }
