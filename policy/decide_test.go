package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixgate/nixgate/policy/policytest"
)

var testStores = policytest.Stores{
	Store:   "local?root=/srv/builder",
	Allowed: "local?root=/srv/alt",
	Other:   "local?root=/srv/other",
}

func testEngine(t *testing.T) *Engine {
	t.Helper()
	cfg, err := Parse("test.toml", []byte(`
user = "nixremote"
[nix]
store = "`+testStores.Store+`"
allowed_stores = ["`+testStores.Allowed+`"]
[[keys]]
name = "build"
role = "build"
[[keys]]
name = "substitute"
role = "substitute"
[[keys]]
name = "lan"
role = "build"
from = ["192.0.2.0/24", "2001:db8::1"]
[[keys]]
name = "old"
role = "build"
expires = 2020-01-01
`))
	if err != nil {
		t.Fatal(err)
	}
	return NewEngine(cfg)
}

func TestDecideCases(t *testing.T) {
	cases, err := policytest.Load(testStores)
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 40 {
		t.Fatalf("only %d cases loaded", len(cases))
	}
	e := testEngine(t)
	for _, tt := range cases {
		t.Run(tt.Name, func(t *testing.T) {
			d := e.Decide(Request{Key: tt.Role, Command: tt.Command})
			if d.Allow != tt.Allow {
				t.Fatalf("Decide(%q).Allow = %v (%s); want %v", tt.Command, d.Allow, d.Reason, tt.Allow)
			}
			if d.Reason == "" || strings.Contains(d.Reason, "\n") {
				t.Errorf("Decide(%q).Reason = %q; want one non-empty line", tt.Command, d.Reason)
			}
			if !tt.Allow {
				if !strings.Contains(d.Reason, tt.Reason) {
					t.Errorf("Decide(%q).Reason = %q; want it to contain %q", tt.Command, d.Reason, tt.Reason)
				}
				if d.Program != "" || d.Args != nil {
					t.Errorf("denied Decide(%q) has program %q args %q", tt.Command, d.Program, d.Args)
				}
				return
			}
			if string(d.Program) != tt.Program || !slices.Equal(d.Args, tt.Args) {
				t.Errorf("Decide(%q) runs %s %q; want %s %q", tt.Command, d.Program, d.Args, tt.Program, tt.Args)
			}
		})
	}
}

func TestDecideKeys(t *testing.T) {
	e := testEngine(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		req    Request
		allow  bool
		reason string
	}{
		{"unknown key", Request{Key: "nobody", Command: "nix-store --serve --write"}, false, "not configured"},
		{"expired key", Request{Key: "old", Command: "nix-store --serve --write", Now: now}, false, "expired on 2020-01-01"},
		{"from match v4", Request{Key: "lan", Command: "nix-store --serve --write", Remote: netip.MustParseAddr("192.0.2.7")}, true, ""},
		{"from match v4-mapped", Request{Key: "lan", Command: "nix-store --serve --write", Remote: netip.MustParseAddr("::ffff:192.0.2.7")}, true, ""},
		{"from match v6 single", Request{Key: "lan", Command: "nix-store --serve --write", Remote: netip.MustParseAddr("2001:db8::1")}, true, ""},
		{"from mismatch", Request{Key: "lan", Command: "nix-store --serve --write", Remote: netip.MustParseAddr("198.51.100.1")}, false, "may not connect from 198.51.100.1"},
		{"from unknown address", Request{Key: "lan", Command: "nix-store --serve --write"}, false, "address is unknown"},
		{"no from, any address", Request{Key: "build", Command: "nix-store --serve --write", Remote: netip.MustParseAddr("198.51.100.1")}, true, ""},
		{"no command", Request{Key: "build", Command: ""}, false, "no command"},
		{"blank command", Request{Key: "build", Command: "   "}, false, "no command"},
		{"huge command", Request{Key: "build", Command: "nix-store --serve --write --store " + strings.Repeat("a", MaxCommandLen)}, false, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Decide(tt.req)
			if d.Allow != tt.allow {
				t.Fatalf("Decide(%+v).Allow = %v (%s); want %v", tt.req, d.Allow, d.Reason, tt.allow)
			}
			if !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("Decide(%+v).Reason = %q; want it to contain %q", tt.req, d.Reason, tt.reason)
			}
		})
	}
}

func TestDecideNoCommandFlag(t *testing.T) {
	d := testEngine(t).Decide(Request{Key: "build"})
	if !d.NoCommand || d.Allow {
		t.Errorf("Decide(no command) = %+v; want NoCommand and denied", d)
	}
}

func TestNilEngineDenies(t *testing.T) {
	var e *Engine
	if d := e.Decide(Request{Key: "build", Command: "nix-store --serve"}); d.Allow {
		t.Error("nil Engine allowed a command")
	}
	if d := NewEngine(nil).Decide(Request{Key: "build", Command: "nix-store --serve"}); d.Allow {
		t.Error("Engine with nil Config allowed a command")
	}
}

func TestDecisionArgv(t *testing.T) {
	d := testEngine(t).Decide(Request{Key: "build", Command: "/nix/var/nix/profiles/default/bin/nix-store --serve --write"})
	got := d.Argv("/usr/bin/nix-store")
	want := []string{"/usr/bin/nix-store", "--serve", "--write", "--store", testStores.Store}
	if !slices.Equal(got, want) {
		t.Errorf("Argv = %q; want %q", got, want)
	}
}

func TestNoStoreConfigured(t *testing.T) {
	cfg, err := Parse("t.toml", []byte("user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(cfg)
	d := e.Decide(Request{Key: "k", Command: "nix-store --serve --write"})
	if !d.Allow || !slices.Equal(d.Args, []string{"--serve", "--write"}) {
		t.Errorf("without a store: %+v; want --serve --write and nothing else", d)
	}
	d = e.Decide(Request{Key: "k", Command: "nix-store --serve --write --store 'local?root=/x'"})
	if d.Allow {
		t.Errorf("without allowed_stores a client store was accepted: %+v", d)
	}
}

func TestDecideShellRole(t *testing.T) {
	cfg, err := Parse("t.toml", []byte("user = \"b\"\n[[keys]]\nname = \"op\"\nrole = \"shell\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(cfg)
	for _, cmd := range []string{"", "uptime; df -h"} {
		d := e.Decide(Request{Key: "op", Command: cmd})
		if !d.Allow || !d.Shell || d.Command != cmd || d.Program != "" {
			t.Errorf("Decide(shell key, %q) = %+v; want a shell", cmd, d)
		}
	}
}

// TestParseCommandConcurrent is the regression test for a data race:
// expand.Fields(nil, …) writes a configuration shared by all callers.
func TestParseCommandConcurrent(t *testing.T) {
	done := make(chan struct{})
	for i := 0; i < 8; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for j := 0; j < 200; j++ {
				if _, err := ParseCommand("nix-store --serve --write --store 'local?root=/x'"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := 0; i < 8; i++ {
		<-done
	}
}

// TestParseCommandTrailingSemicolon: "nix-store --serve --write;" parsed
// as one statement and was accepted, though ; is refused.
func TestParseCommandTrailingSemicolon(t *testing.T) {
	for _, cmd := range []string{"nix-store --serve --write;", "nix-store --serve --write ;", "nix-daemon --stdio;", "nix-store --serve --write; "} {
		if argv, err := ParseCommand(cmd); err == nil || !strings.Contains(err.Error(), "several commands") {
			t.Errorf("ParseCommand(%q) = %q, %v; want a refusal naming several commands", cmd, argv, err)
		}
	}
}

// TestProotRefusesBuildKeys: proot cannot contain code of the account's
// own uid (a build killed its tracer and wrote the keys file), so build
// keys are refused in proot mode unless the operator acknowledges it.
func TestProotRefusesBuildKeys(t *testing.T) {
	base := "user = \"b\"\n[[keys]]\nname = \"ci\"\nrole = \"build\"\n[[keys]]\nname = \"cache\"\nrole = \"substitute\"\n[sandbox]\nmode = \"proot\"\n"
	cfg, err := Parse("p.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(cfg)
	for _, cmd := range []string{"nix-store --serve --write", "nix-daemon --stdio", "nix-store --serve", "bash"} {
		d := e.Decide(Request{Key: "ci", Command: cmd})
		if d.Allow || d.LixBootstrap || !strings.Contains(d.Reason, "build keys are refused in sandbox.mode proot") || !strings.Contains(d.Reason, `proot_build_keys = "same-uid-not-contained"`) || !strings.Contains(d.Reason, "uid") {
			t.Errorf("proot, build key, %q: %+v; want refused with the reason", cmd, d)
		}
	}
	if d := e.Decide(Request{Key: "cache", Command: "nix-store --serve --write"}); !d.Allow || slices.Contains(d.Args, "--write") {
		t.Errorf("proot, substitute key: %+v; want read-only nix-store --serve", d)
	}
	acked, err := Parse("p.toml", []byte(base+"proot_build_keys = \"same-uid-not-contained\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := NewEngine(acked).Decide(Request{Key: "ci", Command: "nix-store --serve --write"}); !d.Allow {
		t.Errorf("proot acknowledged, build key: %+v; want allowed", d)
	}
	if _, err := Parse("p.toml", []byte(base+"proot_build_keys = \"yes\"\n")); err == nil || !strings.Contains(err.Error(), "p.toml:10: sandbox.proot_build_keys: \"yes\"") {
		t.Errorf("proot_build_keys = yes: %v; want refused at p.toml:10", err)
	}
	// Other modes are not concerned.
	direct, _ := Parse("d.toml", []byte(strings.Replace(base, "proot", "userns", 1)))
	if d := NewEngine(direct).Decide(Request{Key: "ci", Command: "nix-store --serve --write"}); !d.Allow {
		t.Errorf("userns, build key: %+v; want allowed", d)
	}
}

// TestDecideBuildLog: "nixgate log DRV", exactly, with DRV a derivation's
// store path as Nix prints it, is allowed to every key but the
// operator's, and runs nothing; every other form is refused.
func TestDecideBuildLog(t *testing.T) {
	e := testEngine(t)
	const drv = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12.drv"
	for _, tt := range []struct {
		key, command string
		allow        bool
	}{
		{"build", "nixgate log " + drv, true},
		{"substitute", "nixgate log '" + drv + "'", true},
		{"build", "nixgate log " + drv + " " + drv, false},
		{"build", "nixgate log", false},
		{"build", "nixgate log /nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-2.12", false},
		{"build", "nixgate log /nix/store/../etc/0123456789abcdfghijklmnpqrsvwxyz-x.drv", false},
		{"build", "nixgate log /nix/store//0123456789abcdfghijklmnpqrsvwxyz-x.drv", false},
		{"build", "nixgate log " + drv + "/", false},
		{"build", "nixgate log 0123456789abcdfghijklmnpqrsvwxyz-x.drv", false},
		{"build", "nixgate log --key other " + drv, false},
		{"build", "nixgate serve", false},
		{"build", "/usr/local/bin/nixgate log " + drv, false},
		{"old", "nixgate log " + drv, false},
	} {
		d := e.Decide(Request{Key: tt.key, Command: tt.command})
		if d.Allow != tt.allow {
			t.Errorf("%s: %q: allow %v (%s); want %v", tt.key, tt.command, d.Allow, d.Reason, tt.allow)
			continue
		}
		if tt.allow && (d.BuildLog != drv || d.Program != "" || d.Args != nil || d.Protocol != 0) {
			t.Errorf("%q: %+v; want the log of %s and nothing run", tt.command, d, drv)
		}
		if !tt.allow && d.BuildLog != "" {
			t.Errorf("%q refused with BuildLog %q", tt.command, d.BuildLog)
		}
	}
}
