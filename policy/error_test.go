package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

// lineError stands for keys' errors, which have a Line method but are
// not *Error (keys cannot import policy).
type lineError struct{}

func (lineError) Error() string { return "keys: no key found" }
func (lineError) Line() string  { return "no key found" }

// limit stands for a typed error a package returns inside its *Error.
type limit struct{ max int }

func (l *limit) Error() string { return fmt.Sprintf("%d sessions running", l.max) }

func TestError(t *testing.T) {
	refused := Errorf("nixproto", "refused")
	inner := Errorf("sandbox", "no nix-store in %s", "/usr/bin")
	tests := []struct {
		name      string
		err       error
		text      string
		line      string
		is        error // errors.Is(err, is) must hold, when set
		wantLimit int   // errors.As finds a *limit with this max, when set
	}{
		{"formatted", Errorf("sandbox", "no nix-store in %s", "/usr/bin"), "sandbox: no nix-store in /usr/bin", "no nix-store in /usr/bin", nil, 0},
		{"wraps with %w", Errorf("usage", "%s: %w", "/state/usage", fs.ErrNotExist), "usage: /state/usage: file does not exist", "/state/usage: file does not exist", fs.ErrNotExist, 0},
		{"a sentinel of its package, prefixed once", Errorf("nixproto", "%w: %s", refused, "role substitute may not build"), "nixproto: refused: role substitute may not build", "refused: role substitute may not build", refused, 0},
		{"twice in its package", Errorf("nixproto", "%w: %w", refused, Errorf("nixproto", "protocol error: %s", "short read")), "nixproto: refused: protocol error: short read", "refused: protocol error: short read", refused, 0},
		{"by %s in its package", Errorf("sandbox", "checking %s: %s", "/home/b", inner), "sandbox: checking /home/b: no nix-store in /usr/bin", "checking /home/b: no nix-store in /usr/bin", nil, 0},
		{"another package's, prefix kept", Errorf("gateway", "starting: %w", inner), "gateway: starting: sandbox: no nix-store in /usr/bin", "starting: sandbox: no nix-store in /usr/bin", inner, 0},
		{"a typed error inside", Errorf("admission", "%w", &limit{2}), "admission: 2 sessions running", "2 sessions running", nil, 2},
		{"wrapped by fmt: not a line of its own", fmt.Errorf("cannot tell which account this is: %w", inner), "cannot tell which account this is: sandbox: no nix-store in /usr/bin", "cannot tell which account this is: sandbox: no nix-store in /usr/bin", inner, 0},
		{"no package", &Error{Err: errors.New("key is no longer configured")}, "key is no longer configured", "key is no longer configured", nil, 0},
		{"nil Err", &Error{Pkg: "policy"}, "policy", "", nil, 0},
		{"a keys error", lineError{}, "keys: no key found", "no key found", nil, 0},
		{"a plain error", errors.New("the builder is shutting down"), "the builder is shutting down", "the builder is shutting down", nil, 0},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.text {
			t.Errorf("%s: Error() = %q; want %q", tt.name, got, tt.text)
		}
		if got := Line(tt.err); got != tt.line {
			t.Errorf("%s: Line = %q; want %q", tt.name, got, tt.line)
		}
		if tt.is != nil && !errors.Is(tt.err, tt.is) {
			t.Errorf("%s: errors.Is(%q, %q) = false", tt.name, tt.err, tt.is)
		}
		var l *limit
		if got := errors.As(tt.err, &l); got != (tt.wantLimit != 0) || got && l.max != tt.wantLimit {
			t.Errorf("%s: errors.As(*limit) = %v, %v; want max %d", tt.name, got, l, tt.wantLimit)
		}
	}
	if Line(nil) != "" {
		t.Errorf("Line(nil) = %q; want empty", Line(nil))
	}
}

// The outermost *Error, not one it wraps, is what errors.As finds, and
// what a caller's Line reads.
func TestErrorAsOutermost(t *testing.T) {
	err := Errorf("gateway", "listen %s: %w", "[::]:22", Errorf("sandbox", "busy"))
	var e *Error
	if !errors.As(err, &e) || e.Pkg != "gateway" || e.Line() != "listen [::]:22: sandbox: busy" {
		t.Errorf("errors.As(%q) = %+v; want the gateway error", err, e)
	}
}

// Errorf does not change its caller's arguments.
func TestErrorfKeepsArgs(t *testing.T) {
	refused := Errorf("nixproto", "refused")
	args := []any{refused, "why"}
	Errorf("nixproto", "%w: %s", args...)
	if args[0] != refused {
		t.Errorf("Errorf changed its argument to %#v", args[0])
	}
}
