package main

import (
	"bytes"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/nixgate/nixgate/sandbox"
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

// TestExecRefusesRoot: exec mode run as root runs nothing, by the rule
// serve mode and nixgate check apply to an account with uid 0
// (sandbox.RefuseRoot), whatever the configuration's user is (the
// configuration refuses the name root, not another name for uid 0).
func TestExecRefusesRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("exec mode's refusal of uid 0 needs the test to run as root")
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "nixgate.toml")
	doc := fmt.Sprintf("user = \"toor\"\nstate_dir = %q\n[log]\nfile = %q\n[[keys]]\nname = \"ci\"\nrole = \"build\"\n", dir, filepath.Join(dir, "exec.log"))
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	env := map[string]string{"SSH_ORIGINAL_COMMAND": "nix-store --serve --write"}
	code := execMode(path, "ci", func(k string) string { return env[k] }, &errb)
	want := fmt.Sprintf("nixgate: refused: account %q has uid 0: nixgate never runs Nix commands as root\n", me.Username)
	if code != exitRefused || errb.String() != want {
		t.Errorf("execMode(as root) = %d, %q; want %d and %q", code, errb.String(), exitRefused, want)
	}
	if _, _, err := sandbox.LookupAccount(me.Username, true); err == nil || "nixgate: refused: "+strings.TrimPrefix(err.Error(), "sandbox: ")+"\n" != want {
		t.Errorf("sandbox.LookupAccount(%q) = %v; want serve mode's refusal to be exec mode's", me.Username, err)
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

func TestFormatVersion(t *testing.T) {
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "7d730ce9aa72e41d8f8e6d7bde713f1de650a736"}, {Key: "vcs.modified", Value: "true"}}
	for _, tt := range []struct {
		ldflags string
		bi      debug.BuildInfo
		want    string
	}{
		{"", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
		{"", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: vcs}, "devel (revision 7d730ce9aa72, modified) go1.26.8"},
		{"", debug.BuildInfo{Main: debug.Module{Version: "v0.4.1-0.20261126112038-7d730ce9aa72+dirty"}}, "v0.4.1-0.20261126112038-7d730ce9aa72+dirty"},
		{"0.4.0", debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"}, Settings: vcs[:1]}, "0.4.0 (revision 7d730ce9aa72)"},
	} {
		if got := formatVersion(tt.ldflags, &tt.bi); got != tt.want {
			t.Errorf("formatVersion(%q, %+v) = %q; want %q", tt.ldflags, tt.bi, got, tt.want)
		}
	}
}

// TestUsageAligned is the regression test for the command list, where
// client-config and user-chroot pushed their summaries out of line.
func TestUsageAligned(t *testing.T) {
	var out bytes.Buffer
	usage(&out)
	col := -1
	for _, c := range commands {
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(line, "  "+c.name+" ") {
				i := strings.Index(line, c.summary)
				if col >= 0 && i != col {
					t.Errorf("%q: summary at column %d, others at %d", line, i, col)
				}
				col = i
			}
		}
	}
}

// TestFlagPlaceholders checks that no option's placeholder reads like a
// default (-role build, -mode serve): each is a word in capitals.
func TestFlagPlaceholders(t *testing.T) {
	for _, args := range [][]string{{"serve"}, {"check"}, {"client-config"}, {"keys", "gen"}, {"keys", "authorize"}, {"keys", "list"}, {"keys", "revoke"}, {"keys", "host"}, {"drain"}, {"usage"}} {
		var out, errb bytes.Buffer
		run(append(args, "--help"), &out, &errb)
		for _, line := range strings.Split(out.String(), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && strings.HasPrefix(f[0], "-") && strings.HasPrefix(line, "  -") && strings.ToUpper(f[1]) != f[1] {
				t.Errorf("%s --help: placeholder %q in %q is not in capitals", strings.Join(args, " "), f[1], line)
			}
		}
	}
	var out bytes.Buffer
	run([]string{"keys", "authorize", "--help"}, &out, &out)
	if !strings.Contains(out.String(), "shell") {
		t.Errorf("keys authorize --help does not list role shell:\n%s", out.String())
	}
}
