package admission

import "github.com/nixgate/nixgate/policy"

// errorf returns one of admission's errors (policy.Errorf): "admission: " and the
// line a client or operator is shown.
func errorf(format string, a ...any) error { return policy.Errorf("admission", format, a...) }
