package nixproto

import "github.com/nixgate/nixgate/policy"

// errorf returns one of nixproto's errors (policy.Errorf): "nixproto: " and the
// line a client or operator is shown.
func errorf(format string, a ...any) error { return policy.Errorf("nixproto", format, a...) }
