package sandbox

import "github.com/nixgate/nixgate/policy"

// errorf returns one of sandbox's errors (policy.Errorf): "sandbox: "
// and the line a client or operator is shown.
func errorf(format string, a ...any) error { return policy.Errorf("sandbox", format, a...) }
