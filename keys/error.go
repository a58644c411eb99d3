package keys

import "fmt"

// keysError is keys' twin of policy.Error, the error type that carries
// the line a client or operator is shown: keys imports nothing of
// nixgate's, so it cannot use that one. Its text is "keys: " and the
// line; its Line method, which policy.Line reads, is the line alone.
type keysError struct {
	err error // says what went wrong: its text is the line
}

// errorf is policy.Errorf for keys: a keys error among a is written as
// its line, so that "keys: " appears once.
func errorf(format string, a ...any) error {
	args := make([]any, len(a))
	for i, v := range a {
		if e, ok := v.(*keysError); ok && e != nil {
			v = sameLine{e}
		}
		args[i] = v
	}
	return &keysError{fmt.Errorf(format, args...)}
}

func (e *keysError) Error() string { return "keys: " + e.Line() }

// Line returns e's text without "keys: ".
func (e *keysError) Line() string { return e.err.Error() }

func (e *keysError) Unwrap() error { return e.err }

// sameLine is a keys error inside another: its text is the line, and it
// unwraps to the error.
type sameLine struct{ e *keysError }

func (s sameLine) Error() string { return s.e.Line() }
func (s sameLine) Unwrap() error { return s.e }
