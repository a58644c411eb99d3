package keys

import (
	"errors"
	"io/fs"
	"testing"
)

// keys' errors read like policy.Error's: "keys: " and the line, the line
// alone from Line (which policy.Line reads), the prefix once however
// they wrap one another.
func TestKeysError(t *testing.T) {
	inner := errorf("option %s is given more than once", "role")
	tests := []struct {
		name, text, line string
		err              error
		is               error
	}{
		{"formatted", "keys: option role is given more than once", "option role is given more than once", inner, inner},
		{"wrapping its own", "keys: ci.keys:3: option role is given more than once", "ci.keys:3: option role is given more than once", errorf("%s:%d: %w", "ci.keys", 3, inner), inner},
		{"wrapping another", "keys: host key: file does not exist", "host key: file does not exist", errorf("host key: %w", fs.ErrNotExist), fs.ErrNotExist},
		{"a typed error inside", "keys: host key /k has mode 0644, readable by others; fix: chmod 600 /k", "host key /k has mode 0644, readable by others; fix: chmod 600 /k", errorf("%w", &HostKeyModeError{Path: "/k", Mode: 0o644}), nil},
	}
	for _, tt := range tests {
		line := "(no Line method)"
		if l, ok := tt.err.(interface{ Line() string }); ok {
			line = l.Line()
		}
		if tt.err.Error() != tt.text || line != tt.line {
			t.Errorf("%s: %q, line %q; want %q, line %q", tt.name, tt.err, line, tt.text, tt.line)
		}
		if tt.is != nil && !errors.Is(tt.err, tt.is) {
			t.Errorf("%s: errors.Is(%q, %q) = false", tt.name, tt.err, tt.is)
		}
	}
	var mode *HostKeyModeError
	if !errors.As(tests[3].err, &mode) || mode.Path != "/k" {
		t.Errorf("errors.As(%q, *HostKeyModeError) = false", tests[3].err)
	}
}
