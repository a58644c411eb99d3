package policy

import "fmt"

// Error is an error of one of nixgate's packages that a person may read:
// a client on its stderr, or an operator at a command's prompt. Its text
// is the package's name, ": " and the line ("sandbox: no nix-store in
// …"), for the log and for errors that wrap it; Line is the line alone,
// which the client sees after "nixgate: ". Nothing strips the prefix off
// the text again.
//
// Every package of nixgate's that may import policy makes its errors
// with Errorf (through a small errorf of its own); keys, which imports
// nothing of nixgate's, has an unexported twin with the same Line
// method, which the function Line reads too.
type Error struct {
	// Pkg names the package that made the error: "sandbox". Empty, the
	// text is the line alone.
	Pkg string
	// Err says what went wrong: its text is the line, and errors.Is and
	// errors.As look through it. Nil, the line is empty and the text is
	// Pkg alone.
	Err error
}

// Errorf returns an *Error of package pkg whose line is
// fmt.Errorf(format, a...): %w wraps as it does there. An *Error of pkg
// itself among a is written as its line, so that a package's prefix
// appears once however its errors wrap one another
// (Errorf("nixproto", "%w: %s", ErrRefused, why) reads "nixproto:
// refused: …"); errors.Is still finds it.
func Errorf(pkg, format string, a ...any) error {
	args := make([]any, len(a))
	for i, v := range a {
		if e, ok := v.(*Error); ok && e != nil && e.Pkg == pkg {
			v = sameLine{e}
		}
		args[i] = v
	}
	return &Error{Pkg: pkg, Err: fmt.Errorf(format, args...)}
}

func (e *Error) Error() string {
	line := e.Line()
	switch {
	case e.Pkg == "":
		return line
	case line == "":
		return e.Pkg
	}
	return e.Pkg + ": " + line
}

// Line returns what a client or operator is shown of e: its text without
// the package's prefix.
func (e *Error) Line() string {
	if e.Err == nil {
		return ""
	}
	return e.Err.Error()
}

// Unwrap returns e.Err.
func (e *Error) Unwrap() error { return e.Err }

// sameLine is an *Error inside another error of its package: its text is
// the line, and it unwraps to the *Error.
type sameLine struct{ e *Error }

func (s sameLine) Error() string { return s.e.Line() }
func (s sameLine) Unwrap() error { return s.e }

// Line returns the line a client or operator is shown for err: its Line
// when err has one (an *Error, or a keys error), else its whole text.
// It looks at err itself, not at what err wraps: an error that wraps an
// *Error says more than that error's line. Line(nil) is "".
func Line(err error) string {
	if err == nil {
		return ""
	}
	if l, ok := err.(interface{ Line() string }); ok {
		return l.Line()
	}
	return err.Error()
}

// errorf returns one of policy's own errors: "policy: " and the line.
func errorf(format string, a ...any) error { return Errorf("policy", format, a...) }
