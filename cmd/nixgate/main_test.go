package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHelpOnEveryCommand(t *testing.T) {
	for _, c := range commands {
		var out, errb bytes.Buffer
		if code := run([]string{c.name, "--help"}, &out, &errb); code != exitOK {
			t.Errorf("%s --help exited %d: %s", c.name, code, errb.String())
		}
		if !strings.Contains(out.String(), "Usage: nixgate "+c.name) || !strings.Contains(out.String(), "Example") {
			t.Errorf("%s --help does not show usage and an example:\n%s", c.name, out.String())
		}
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "Usage: nixgate COMMAND"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"exec"}, "--key is required"},
		{[]string{"exec", "--key", "ci", "extra"}, `unexpected argument "extra"`},
		{[]string{"exec", "--bogus"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(tt.args, &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), tt.want) || out.Len() != 0 {
			t.Errorf("run(%q) = %d, stdout %q, stderr %q; want exit %d and %q on stderr only", tt.args, code, out.String(), errb.String(), exitUsage, tt.want)
		}
	}
}

// TestExecBrokenConfig checks that exec mode with a broken config runs
// nothing and says why in one line with the file and line.
func TestExecBrokenConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nixgate.toml")
	os.WriteFile(path, []byte("user = \"b\"\n[[keys]]\nname = \"ci\"\nrole = \"admin\"\n"), 0o644)
	var errb bytes.Buffer
	env := map[string]string{"SSH_ORIGINAL_COMMAND": "nix-store --serve --write"}
	code := execMode(path, "ci", func(k string) string { return env[k] }, &errb)
	want := "nixgate: configuration error, nothing was run: policy: " + path + ":4: keys[0].role: unknown role"
	if code != exitRefused || !strings.HasPrefix(errb.String(), want) || strings.Count(errb.String(), "\n") != 1 {
		t.Errorf("execMode(broken) = %d, %q; want %d and a line starting %q", code, errb.String(), exitRefused, want)
	}
}

func TestRemoteAddr(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1 50000 192.0.2.2 22": "192.0.2.1",
		"::1 50000 ::1 22":             "::1",
		"":                             "invalid IP",
		"garbage":                      "invalid IP",
	} {
		if got := remoteAddr(in).String(); got != want {
			t.Errorf("remoteAddr(%q) = %q; want %q", in, got, want)
		}
	}
	if got := serverName("192.0.2.1 50000 2001:db8::2 22"); got != "[2001:db8::2]" {
		t.Errorf("serverName = %q", got)
	}
}
