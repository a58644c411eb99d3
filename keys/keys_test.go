package keys

import (
	"strings"
	"testing"
)

// Fixed test keys (public halves only).
const (
	keyA = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0nUc4ChNnd1VOVyS6mW3eiBkNR0bHtAnNALhG1n7cC a@test"
	keyB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKnCrEjEfi2LXbiSlJs+jHLbdmoLk8Zx5Wa3TP1FsS1R b@test"
)

func TestParseLineKeepsOptions(t *testing.T) {
	e, err := ParseLine(`restrict,command="nixgate exec --key ci",from="10.0.0.0/8" ` + keyA)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"restrict", `command="nixgate exec --key ci"`, `from="10.0.0.0/8"`}
	if strings.Join(e.Options, "|") != strings.Join(want, "|") || e.Comment != "a@test" {
		t.Errorf("ParseLine = %+v; want options %q and comment a@test", e, want)
	}
	if fp := Fingerprint(e.Key); !strings.HasPrefix(fp, "SHA256:") {
		t.Errorf("Fingerprint = %q", fp)
	}
}

func TestParseLineErrors(t *testing.T) {
	for _, line := range []string{"", "# comment", "ssh-ed25519 notbase64", "ssh-ed25519", keyA + "\n" + keyB} {
		if _, err := ParseLine(line); err == nil || !strings.HasPrefix(err.Error(), "keys: ") {
			t.Errorf("ParseLine(%q) = %v; want a keys: error", line, err)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	f.Add(keyA)
	f.Add(`restrict,command="nixgate exec --key ci" ` + keyB)
	f.Add(`restrict,command="nixgate exec --key ci; exec /bin/sh" ` + keyB)
	f.Add(`name="a\\"b",from="10.0.0.0/8\\x2c0.0.0.0/0" ` + keyA)
	f.Add(`from="10.0.0.0/8,!10.1.0.0/16" ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC`)
	f.Fuzz(func(t *testing.T, line string) {
		e, err := ParseLine(line)
		if err == nil && e.Key == nil {
			t.Fatalf("ParseLine(%q) returned no key and no error", line)
		}
		if err != nil {
			return
		}
		for _, raw := range e.Options {
			o, err := ParseOption(raw)
			if err != nil || !o.HasValue || strings.HasSuffix(o.Value, `\`) {
				continue
			}
			// What nixgate writes, OpenSSH's rules read back unchanged.
			if back, err := ParseOption(quoteOption(o.Name, o.Value)); err != nil || back.Value != o.Value {
				t.Fatalf("option %q: value %q written as %s reads back as %q, %v", raw, o.Value, quoteOption(o.Name, o.Value), back.Value, err)
			}
		}
		if f, err := e.ForcedExec(); err == nil {
			argv, perr := shellWords(mustOption(t, e, "command"))
			if perr != nil || f.Key == "" || len(argv) > 6 || argv[1] != "exec" {
				t.Fatalf("ForcedExec(%q) = %+v, but the command is %q, %v", line, f, argv, perr)
			}
			// What nixgate writes for it reads back as the same.
			g := Grant{Name: f.Key, Key: Entry{Key: e.Key, Comment: e.Comment}}
			back, err := ParseLine(g.ForcedCommandLine(f.Program, f.Config))
			if err != nil {
				t.Fatalf("ForcedCommandLine for %+v: %v", f, err)
			}
			if bf, err := back.ForcedExec(); err != nil || bf != f {
				t.Fatalf("ForcedExec(%q) = %+v, but written again it reads %+v, %v", line, f, bf, err)
			}
		}
	})
}

func TestEntryOptions(t *testing.T) {
	tests := []struct {
		line              string
		restricted, force bool
	}{
		{`restrict,command="/usr/local/bin/nixgate exec --config /etc/nixgate/nixgate.toml --key ci" ` + keyA, true, true},
		{`command="nixgate exec --key ci" ` + keyA, false, true},
		{`restrict,command="/usr/bin/nix-store --serve --store 'local?root=/tmp/nixgate-x'" ` + keyA, true, false},
		{`restrict,command="/opt/evil-nixgate exec" ` + keyA, true, false},
		{keyA, false, false},
	}
	for _, tt := range tests {
		e, err := ParseLine(tt.line)
		if err != nil {
			t.Fatal(err)
		}
		if e.Restricted() != tt.restricted || e.ForcesNixgate() != tt.force {
			t.Errorf("%.60q: Restricted %v ForcesNixgate %v; want %v %v", tt.line, e.Restricted(), e.ForcesNixgate(), tt.restricted, tt.force)
		}
	}
}

func mustOption(t *testing.T, e Entry, name string) string {
	t.Helper()
	v, ok := e.Option(name)
	if !ok {
		t.Fatalf("%v: no option %s", e.Options, name)
	}
	return v
}

func TestKnownHostsName(t *testing.T) {
	for _, tt := range []struct {
		host string
		port int
		want string
	}{
		{"builder", 22, "builder"},
		{"builder", 0, "builder"},
		{"builder", 2222, "[builder]:2222"},
		{"127.0.0.1", 2222, "[127.0.0.1]:2222"},
		{"::1", 2222, "[::1]:2222"},
		{"::1", 22, "::1"},
	} {
		if got := KnownHostsName(tt.host, tt.port); got != tt.want {
			t.Errorf("KnownHostsName(%q, %d) = %q; want %q", tt.host, tt.port, got, tt.want)
		}
	}
}
