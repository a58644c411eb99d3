package keys

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fpA = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"
const fpB = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"

func TestParseRevoked(t *testing.T) {
	l, err := ParseRevoked("/r", []byte("# revoked\n\nserial:7\nid:ci run 12\n"+fpA+"\r\nid:x\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		serial      uint64
		id, key, ca string
		want        string
	}{
		{7, "", "", "", "serial 7 is revoked (/r:3)"},
		{8, "", "", "", ""},
		{0, "", "", "", ""},
		{1, "ci run 12", "", "", `key ID "ci run 12" is revoked (/r:4)`},
		{1, "ci run 1", "", "", ""},
		{1, "ci run 12 ", "", "", ""},
		{1, "", fpA, fpB, "key " + fpA + " is revoked (/r:5)"},
		{1, "", fpB, fpA, "the CA's key " + fpA + " is revoked (/r:5)"},
		{1, "", fpB, fpB, ""},
	}
	for _, tt := range tests {
		if got := l.Revoked(tt.serial, tt.id, tt.key, tt.ca); got != tt.want {
			t.Errorf("Revoked(%d, %q, %q, %q) = %q; want %q", tt.serial, tt.id, tt.key, tt.ca, got, tt.want)
		}
	}
	var nilList *RevokedList
	if nilList.Revoked(7, "x", fpA, fpA) != "" {
		t.Error("a nil list revoked something")
	}
}

func TestParseRevokedErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"serial:x\n", `/r:1: serial "x" is not a decimal number`},
		{"serial:07\n", `serial "07" is not a decimal number`},
		{"serial: 7\n", `serial " 7" is not a decimal number`},
		{"serial:-1\n", "is not a decimal number"},
		{"serial:18446744073709551616\n", "is not a decimal number"},
		{"serial:0\n", "serial 0 is every certificate signed without -z"},
		{"\n\nid:\n", "/r:3: an empty key ID"},
		{"SHA256:abc\n", "is not a SHA256 fingerprint"},
		{"sha256:" + fpA[7:] + "\n", "want serial:N, id:KEY-ID or SHA256:FINGERPRINT"},
		{"MD5:aa:bb\n", "want serial:N"},
		{" serial:7\n", "want serial:N"},
		{"7\n", "want serial:N"},
		{"id:a\x00b\n", "a NUL byte"},
		{"id:ci-run-1234 \n", `key ID "ci-run-1234 " starts or ends with white space`},
		{"id:\tci\n", "starts or ends with white space"},
	}
	for _, tt := range tests {
		_, err := ParseRevoked("/r", []byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "keys: ") {
			t.Errorf("ParseRevoked(%q) = %v; want an error with %q", tt.in, err, tt.want)
		}
	}
}

func TestRevokedEntry(t *testing.T) {
	tests := []struct{ kind, what, want, err string }{
		{"serial", "12", "serial:12", ""},
		{"id", "ci run 1", "id:ci run 1", ""},
		{"fingerprint", fpA, fpA, ""},
		{"serial", "0", "", "serial 0"},
		{"serial", "x", "", "not a decimal number"},
		{"id", "", "", "an empty key ID"},
		{"id", "a\nserial:1", "", "an entry is one line"},
		{"fingerprint", "MD5:x", "", "want serial:N"},
		{"colour", "red", "", "no kind of revocation"},
	}
	for _, tt := range tests {
		got, err := RevokedEntry(tt.kind, tt.what)
		if tt.err == "" && (err != nil || got != tt.want) || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("RevokedEntry(%q, %q) = %q, %v; want %q, %q", tt.kind, tt.what, got, err, tt.want, tt.err)
		}
	}
}

func TestAddRevoked(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ci.revoked")
	for _, e := range []string{"serial:3", "id:x", "serial:3"} {
		if _, err := AddRevoked(p, e); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(p)
	if string(data) != "serial:3\nid:x\n" {
		t.Errorf("the list = %q", data)
	}
	if added, _ := AddRevoked(p, "id:x"); added {
		t.Error("an entry listed already was added again")
	}
	os.WriteFile(p, []byte("serial:3\nbogus\n"), 0o644)
	if _, err := AddRevoked(p, "id:y"); err == nil || !strings.Contains(err.Error(), p+":2:") {
		t.Errorf("AddRevoked to a broken list: %v", err)
	}
	if data, _ := os.ReadFile(p); string(data) != "serial:3\nbogus\n" {
		t.Errorf("a broken list was written to: %q", data)
	}
}

// FuzzParseRevoked checks that the list parser never panics, and that
// every entry it accepts revokes what it names.
func FuzzParseRevoked(f *testing.F) {
	f.Add("serial:7\nid:ci\n" + fpA + "\n# c\n")
	f.Add("serial:18446744073709551615\r\n")
	f.Add("id: \n")
	f.Fuzz(func(t *testing.T, in string) {
		l, err := ParseRevoked("f", []byte(in))
		if err != nil {
			if l != nil {
				t.Fatal("a list and an error")
			}
			return
		}
		for _, line := range strings.Split(in, "\n") {
			line = strings.TrimSuffix(line, "\r")
			switch {
			case strings.HasPrefix(line, "id:") && l.Revoked(0, line[3:], "", "") == "":
				t.Fatalf("%q is listed but not revoked", line)
			case strings.HasPrefix(line, "SHA256:") && l.Revoked(0, "", line, "") == "":
				t.Fatalf("%q is listed but not revoked", line)
			}
		}
	})
}
