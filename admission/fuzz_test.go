package admission

import (
	"strings"
	"testing"
	"unicode"
)

// FuzzParseKeptHealth: a kept health verdict is a file the build account
// may write. Whatever it holds, reading it never panics, and a verdict
// read as whole is exactly one of healthy and unhealthy-with-a-reason,
// for the socket asked about, with a reason of one clean line.
func FuzzParseKeptHealth(f *testing.F) {
	f.Add([]byte("at 1795711000000000000\nsocket /s\nok\n"), "/s")
	f.Add([]byte("at 1795711000000000000\nsocket /s\nreason Nix daemon at /s does not answer: connection refused\n"), "/s")
	f.Add([]byte("at 12\nsocket /s\nok\nreason both\n"), "/s")
	f.Add([]byte("socket /s\nreason \x1b[2J\r\n"), "/s")
	f.Fuzz(func(t *testing.T, b []byte, socket string) {
		h, ok := parseKeptHealth(b, socket)
		if !ok {
			if h != (Health{}) {
				t.Fatalf("not whole, yet %+v", h)
			}
			return
		}
		if h.OK == (h.Reason != "") {
			t.Fatalf("OK %v with reason %q", h.OK, h.Reason)
		}
		if h.At.IsZero() {
			t.Fatal("whole without a time")
		}
		if strings.ContainsFunc(h.Reason, func(r rune) bool { return unicode.IsControl(r) || r == '\n' }) || len(h.Reason) > maxReason {
			t.Fatalf("reason %q is not one clean line", h.Reason)
		}
	})
}
