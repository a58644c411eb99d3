package keys

import (
	"strings"
	"testing"
	"time"
)

// TestKeysFileFromEscapeNotTwoNetworks: from="10.0.0.0/8\x2c0.0.0.0/0"
// went through Go's unquoting and became two networks, one of them
// everywhere; OpenSSH reads \x2c as four bytes.
func TestKeysFileFromEscapeNotTwoNetworks(t *testing.T) {
	specs, err := ParseFile("k", []byte(`role="build",from="10.0.0.0/8\x2c0.0.0.0/0" `+keyA+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := specs[0].From; len(got) != 1 || got[0] != `10.0.0.0/8\x2c0.0.0.0/0` {
		t.Fatalf("From = %q; want the one literal value", got)
	}
	// That the value is then refused is package config's test.
}

// TestKeysFileRepeatedOptionRefused: a repeated option silently took the
// last value.
func TestKeysFileRepeatedOptionRefused(t *testing.T) {
	for _, line := range []string{
		`role="substitute",role="build" ` + keyA,
		`role="build",from="10.0.0.0/8",from="0.0.0.0/0" ` + keyA,
		`role="build",NAME="a",name="b" ` + keyA,
		`role="build",expiry-time="20200101",expiry-time="20990101" ` + keyA,
		`restrict,role="build",restrict ` + keyA,
	} {
		_, err := ParseFile("k", []byte("# keys\n"+line+"\n"))
		if err == nil || !strings.Contains(err.Error(), "keys: k:2: option ") || !strings.Contains(err.Error(), "more than once") {
			t.Errorf("ParseFile(%.50q) = %v; want k:2: option … more than once", line, err)
		}
	}
}

func TestParseOptionOpenSSHRules(t *testing.T) {
	tests := []struct {
		opt, name, value string
		err              string
	}{
		{`restrict`, "restrict", "", ""},
		{`From="10.0.0.0/8"`, "from", "10.0.0.0/8", ""},
		{`name="a\"b"`, "name", `a"b`, ""},
		{`name="a\\b"`, "name", `a\\b`, ""},
		{`name="a\nb"`, "name", `a\nb`, ""},
		{`name="a\x2cb"`, "name", `a\x2cb`, ""},
		{`name="a\\"b"`, "name", `a\"b`, ""},
		{`name=a`, "", "", "double quotes"},
		{`name="a`, "", "", "closing double quote"},
		{`name="a"b`, "", "", "after the closing"},
		{`name="a\"`, "", "", "closing double quote"},
	}
	for _, tt := range tests {
		o, err := ParseOption(tt.opt)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseOption(%q) = %+v, %v; want error %q", tt.opt, o, err, tt.err)
			}
			continue
		}
		if err != nil || o.Name != tt.name || o.Value != tt.value {
			t.Errorf("ParseOption(%q) = %+v, %v; want %s=%q", tt.opt, o, err, tt.name, tt.value)
		}
	}
}

// TestForcesNixgateExact: command="nixgate exec --key ci; exec /bin/sh"
// was taken for nixgate's forced command, so check and keys list vouched
// for a line that gives a shell.
func TestForcesNixgateExact(t *testing.T) {
	tests := []struct {
		command string
		key     string // "" when not nixgate's
	}{
		{`nixgate exec --key ci`, "ci"},
		{`/usr/local/bin/nixgate exec --config /etc/nixgate/nixgate.toml --key ci`, "ci"},
		{`/usr/local/bin/nixgate exec --key ci --config /etc/nixgate/nixgate.toml`, "ci"},
		{`nixgate exec -key=ci -config=/etc/n.toml`, "ci"},
		{`nixgate exec --config '/etc/my nixgate/n.toml' --key ci`, "ci"},
		{`nixgate exec --config /etc/my\ nixgate/n.toml --key "ci"`, "ci"},
		{`nixgate exec --key c?`, ""},                          // the shell globs ?
		{`nixgate exec --config /etc/{a,b}.toml --key ci`, ""}, // and bash expands braces
		{`nixgate exec --key ci #`, ""},
		{`nixgate exec --key ci; exec /bin/sh`, ""},
		{`nixgate exec --key ci;`, ""},
		{`nixgate exec --key ci && sh`, ""},
		{`nixgate exec --key ci | sh`, ""},
		{`nixgate exec --key $(id)`, ""},
		{`nixgate exec --key ci extra`, ""},
		{`nixgate exec --key ci --key ops`, ""},
		{`nixgate exec --key`, ""},
		{`nixgate exec --config /x`, ""},
		{`nixgate exec --help --key ci`, ""},
		{`nixgate keys list --key ci`, ""},
		{`./nixgate exec --key ci`, ""},
		{`bin/nixgate exec --key ci`, ""},
		{`/opt/evil-nixgate exec --key ci`, ""},
		{`FOO=1 nixgate exec --key ci`, ""},
		{`sh -c 'nixgate exec --key ci'`, ""},
	}
	for _, tt := range tests {
		line := `restrict,command="` + strings.ReplaceAll(tt.command, `"`, `\"`) + `" ` + keyA
		e, err := ParseLine(line)
		if err != nil {
			t.Fatal(err)
		}
		f, ferr := e.ForcedExec()
		if got := e.ForcesNixgate(); got != (tt.key != "") || (ferr == nil && f.Key != tt.key) {
			t.Errorf("command=%q: ForcesNixgate %v, ForcedExec %+v, %v; want key %q", tt.command, got, f, ferr, tt.key)
		}
		if name := lineName(e, f, ferr); tt.key == "" && name != "a@test" {
			t.Errorf("command=%q: line name %q; want the comment", tt.command, name)
		}
	}
	// A second command= (OpenSSH refuses the line) is not nixgate's.
	e, _ := ParseLine(`restrict,command="nixgate exec --key ci",command="/bin/sh" ` + keyA)
	if e.ForcesNixgate() {
		t.Error("two command= options: ForcesNixgate = true")
	}
}

// TestForcedCommandLineRoundTrip: what keys authorize --exec writes is
// read back as nixgate's, with paths that need quoting.
func TestForcedCommandLineRoundTrip(t *testing.T) {
	k, err := ParseGrantKey(keyA)
	if err != nil {
		t.Fatal(err)
	}
	g := Grant{Name: "ci", Role: "build", Key: k, Expires: time.Time{}}
	for _, cfgPath := range []string{"/etc/nixgate/nixgate.toml", "/etc/my nixgate/n.toml", `/etc/it's "here"/n.toml`, `/etc/back\slash/n.toml`} {
		line := g.ForcedCommandLine("/usr/local/bin/nixgate", cfgPath)
		e, err := ParseLine(line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		f, err := e.ForcedExec()
		if err != nil || f.Key != "ci" || f.Config != cfgPath || f.Program != "/usr/local/bin/nixgate" || !e.Restricted() {
			t.Errorf("ForcedCommandLine(%q) = %s; read back %+v, %v", cfgPath, line, f, err)
		}
	}
}
