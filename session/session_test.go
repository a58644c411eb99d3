package session

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixgate/nixgate/policy"
)

// testConfig has a key of each role and a build key with full_trust. Keys
// need no public_key: exec mode leaves verifying them to OpenSSH.
const testConfig = `
user = "nixremote"

[[keys]]
name = "ci"
role = "build"

[[keys]]
name = "cache"
role = "substitute"

[[keys]]
name = "ops"
role = "shell"

[[keys]]
name = "root-ci"
role = "build"
full_trust = true
`

// testEngine returns an Engine for testConfig.
func testEngine(t *testing.T) *policy.Engine {
	t.Helper()
	cfg, err := policy.Parse("test.toml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	return policy.NewEngine(cfg)
}

func TestDecide(t *testing.T) {
	e := testEngine(t)
	tests := []struct {
		name    string
		key     string
		command string
		mode    Mode
		login   string

		kind     Kind
		protocol policy.Protocol
		args     []string
		message  string // a part of Message; empty wants none
	}{
		{
			name: "build key ssh-ng", key: "ci", command: "nix-daemon --stdio", mode: Exec,
			kind: RunNix, protocol: policy.ProtocolWorker, args: []string{"--stdio"},
		},
		{
			name: "build key ssh", key: "ci", command: "nix-store --serve --write", mode: Serve,
			kind: RunNix, protocol: policy.ProtocolServe, args: []string{"--serve", "--write"},
		},
		{
			name: "substitute key ssh loses --write", key: "cache", command: "nix-store --serve --write", mode: Exec,
			kind: RunNix, protocol: policy.ProtocolServe, args: []string{"--serve"},
		},
		{
			name: "substitute key ssh-ng", key: "cache", command: "nix-daemon --stdio", mode: Serve,
			kind: RunNix, protocol: policy.ProtocolWorker, args: []string{"--stdio"},
		},
		{
			name: "shell key in exec mode", key: "ops", command: "uptime", mode: Exec,
			kind: Refuse, message: "refused: the shell role is for serve mode",
		},
		{
			name: "shell key logging in in exec mode", key: "ops", mode: Exec,
			kind: Refuse, message: "serve mode",
		},
		{
			name: "shell key in serve mode", key: "ops", command: "uptime", mode: Serve,
			kind: Shell,
		},
		{
			name: "shell key logging in in serve mode", key: "ops", mode: Serve,
			kind: Shell,
		},
		{
			name: "no command", key: "ci", mode: Serve, login: "nix@builder.example",
			kind: Refuse, message: "this account only serves Nix, there is no shell: use it from Nix, e.g. nix store ping --store ssh://nix@builder.example",
		},
		{
			name: "no command without login", key: "cache", mode: Exec,
			kind: Refuse, message: "--store ssh://builder",
		},
		{
			name: "unknown key", key: "nobody", command: "nix-daemon --stdio", mode: Serve,
			kind: Refuse, message: `refused: key "nobody" is not configured`,
		},
		{
			name: "not a Nix command", key: "ci", command: "rm -rf /", mode: Exec,
			kind: Refuse, message: "refused: command refused: ",
		},
		{
			name: "bash without stdin", key: "ci", command: "bash", mode: Serve,
			kind: Refuse, message: "refused: Lix's start-up dialogue is not offered here",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Decide(Request{
				Engine:  e,
				Request: policy.Request{Key: tt.key, Command: tt.command},
				Mode:    tt.mode,
				Login:   tt.login,
			})
			if v.Kind != tt.kind {
				t.Fatalf("Decide(%q, %q).Kind = %v (%q); want %v", tt.key, tt.command, v.Kind, v.Message, tt.kind)
			}
			if tt.message == "" && v.Message != "" {
				t.Errorf("Decide(%q, %q).Message = %q; want none", tt.key, tt.command, v.Message)
			}
			if !strings.Contains(v.Message, tt.message) || strings.Contains(v.Message, "\n") {
				t.Errorf("Decide(%q, %q).Message = %q; want one line containing %q", tt.key, tt.command, v.Message, tt.message)
			}
			if v.Kind == Refuse && v.Message == "" {
				t.Errorf("Decide(%q, %q) refused without a message", tt.key, tt.command)
			}
			if v.LixCommand != "" {
				t.Errorf("Decide(%q, %q).LixCommand = %q; want none", tt.key, tt.command, v.LixCommand)
			}
			d := v.Decision
			if d.Protocol != tt.protocol || !slices.Equal(d.Args, tt.args) {
				t.Errorf("Decide(%q, %q) runs %s %q; want %s %q", tt.key, tt.command, d.Protocol, d.Args, tt.protocol, tt.args)
			}
			if v.Kind == Shell && (!d.Shell || d.Command != tt.command) {
				t.Errorf("Decide(%q, %q).Decision = %+v; want the shell with that command", tt.key, tt.command, d)
			}
			if v.Kind == RunNix {
				if d.Ops.Key != tt.key || d.Ops.Role != d.Role || d.Role == "" {
					t.Errorf("Decide(%q, %q).Decision.Ops = %+v; want key %q, role %q", tt.key, tt.command, d.Ops, tt.key, d.Role)
				}
				if !slices.Equal(d.Ops.ClientSettings, policy.DefaultClientSettings) {
					t.Errorf("Decide(%q, %q).Decision.Ops.ClientSettings = %q; want the defaults", tt.key, tt.command, d.Ops.ClientSettings)
				}
			}
		})
	}
}

func TestDecideOpsRole(t *testing.T) {
	e := testEngine(t)
	v := Decide(Request{Engine: e, Request: policy.Request{Key: "ci", Command: "nix-daemon --stdio"}, Mode: Exec})
	if v.Kind != RunNix || v.Decision.Protocol != policy.ProtocolWorker || v.Decision.Ops.Role != policy.RoleBuild {
		t.Errorf("Decide(ci, nix-daemon --stdio) = %+v; want RunNix, worker protocol, ops role build", v)
	}
	v = Decide(Request{Engine: e, Request: policy.Request{Key: "cache", Command: "nix-store --serve --write"}, Mode: Exec})
	if v.Kind != RunNix || v.Decision.Protocol != policy.ProtocolServe || v.Decision.Ops.Role != policy.RoleSubstitute {
		t.Errorf("Decide(cache, nix-store --serve --write) = %+v; want RunNix, serve protocol, ops role substitute", v)
	}
}

func TestDecideNilEngine(t *testing.T) {
	v := Decide(Request{Request: policy.Request{Key: "ci", Command: "nix-daemon --stdio"}, Mode: Serve})
	if v.Kind != Refuse || !strings.Contains(v.Message, "no configuration") {
		t.Errorf("Decide with a nil Engine = %+v; want Refuse, no configuration", v)
	}
}

func TestDecideLix(t *testing.T) {
	const protocolBytes = "\x01\x00\x00\x00\x00\x00\x00\x00"
	tests := []struct {
		name   string
		key    string
		stdin  string
		kind   Kind
		lix    string   // LixCommand wanted
		args   []string // when RunNix
		msg    string   // a part of Message when refused
		stdout string
		rest   string // what stdin still holds after Decide
	}{
		{
			name: "ssh", key: "ci", stdin: "echo started\nexec nix-store --serve --write\n" + protocolBytes,
			kind: RunNix, lix: "nix-store --serve --write", args: []string{"--serve", "--write"},
			stdout: "started\n", rest: protocolBytes,
		},
		{
			name: "ssh for a substitute key", key: "cache", stdin: "echo started\nexec nix-store --serve --write\n",
			kind: RunNix, lix: "nix-store --serve --write", args: []string{"--serve"},
			stdout: "started\n",
		},
		{
			name: "ssh-ng", key: "ci", stdin: "echo started\nexec nix-daemon --stdio\n",
			kind: RunNix, lix: "nix-daemon --stdio", args: []string{"--stdio"},
			stdout: "started\n",
		},
		{
			name: "bad second line", key: "ci", stdin: "echo started\nnix-daemon --stdio\n",
			kind: Refuse, msg: `refused: Lix start-up: got "nix-daemon --stdio", want "exec COMMAND"`,
			stdout: "started\n",
		},
		{
			name: "bad first line", key: "ci", stdin: "id\nexec nix-daemon --stdio\n",
			kind: Refuse, msg: `refused: Lix start-up: got "id", want "echo started"`,
			rest: "exec nix-daemon --stdio\n",
		},
		{
			name: "closed before the command", key: "ci", stdin: "echo started\nexec nix-d",
			kind: Refuse, msg: "refused: Lix start-up: connection closed before a full line",
			stdout: "started\n",
		},
		{
			name: "exec of a command not allowed", key: "ci", stdin: "echo started\nexec sh -c id\n",
			kind: Refuse, lix: "sh -c id", msg: "refused: command refused",
			stdout: "started\n",
		},
		{
			name: "exec of bash again", key: "ci", stdin: "echo started\nexec bash\n",
			kind: Refuse, lix: "bash", msg: "refused: command refused",
			stdout: "started\n",
		},
	}
	e := testEngine(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdin := strings.NewReader(tt.stdin)
			var stdout bytes.Buffer
			v := Decide(Request{
				Engine:  e,
				Request: policy.Request{Key: tt.key, Command: "bash"},
				Mode:    Exec,
				Stdin:   stdin,
				Stdout:  &stdout,
			})
			if v.Kind != tt.kind {
				t.Fatalf("Decide(Lix %q).Kind = %v (%q); want %v", tt.stdin, v.Kind, v.Message, tt.kind)
			}
			if v.LixCommand != tt.lix {
				t.Errorf("Decide(Lix %q).LixCommand = %q; want %q", tt.stdin, v.LixCommand, tt.lix)
			}
			if got := stdout.String(); got != tt.stdout {
				t.Errorf("Decide(Lix %q) wrote %q to stdout; want %q", tt.stdin, got, tt.stdout)
			}
			if rest, _ := io.ReadAll(stdin); string(rest) != tt.rest {
				t.Errorf("Decide(Lix %q) left %q on stdin; want %q", tt.stdin, rest, tt.rest)
			}
			if tt.kind == Refuse {
				if !strings.Contains(v.Message, tt.msg) {
					t.Errorf("Decide(Lix %q).Message = %q; want it to contain %q", tt.stdin, v.Message, tt.msg)
				}
				return
			}
			if v.Message != "" || !slices.Equal(v.Decision.Args, tt.args) || v.Decision.LixBootstrap {
				t.Errorf("Decide(Lix %q) = %+v; want to run with args %q", tt.stdin, v, tt.args)
			}
			if !hasAttr(v.LogAttrs(), "lix_command", tt.lix) {
				t.Errorf("Decide(Lix %q).LogAttrs() = %v; want lix_command %q", tt.stdin, v.LogAttrs(), tt.lix)
			}
		})
	}
}

func TestDecideLixNeedsStdio(t *testing.T) {
	e := testEngine(t)
	for _, req := range []Request{
		{Engine: e, Request: policy.Request{Key: "ci", Command: "bash"}, Mode: Exec},
		{Engine: e, Request: policy.Request{Key: "ci", Command: "bash"}, Mode: Exec, Stdout: io.Discard},
		{Engine: e, Request: policy.Request{Key: "ci", Command: "bash"}, Mode: Exec, Stdin: strings.NewReader("echo started\nexec nix-daemon --stdio\n")},
	} {
		v := Decide(req)
		if v.Kind != Refuse || !strings.Contains(v.Message, "not offered here") || v.LixCommand != "" {
			t.Errorf("Decide(bash, stdin %v, stdout %v) = %+v; want Refuse, dialogue not offered", req.Stdin != nil, req.Stdout != nil, v)
		}
	}
}

// hasAttr reports whether the slog key-value list attrs holds key = value.
func hasAttr(attrs []any, key string, value any) bool {
	for i := 0; i+1 < len(attrs); i += 2 {
		if attrs[i] == key && attrs[i+1] == value {
			return true
		}
	}
	return false
}

// hasKey reports whether the slog key-value list attrs holds key.
func hasKey(attrs []any, key string) bool {
	for i := 0; i < len(attrs); i += 2 {
		if attrs[i] == key {
			return true
		}
	}
	return false
}

func TestLogAttrs(t *testing.T) {
	e := testEngine(t)
	tests := []struct {
		key, command string
		fullTrust    bool
		protocol     string // empty wants none logged
	}{
		{"root-ci", "nix-daemon --stdio", true, "worker"},
		{"root-ci", "nix-store --serve --write", true, "serve"},
		{"root-ci", "rm -rf /", false, ""},
		{"ci", "nix-daemon --stdio", false, "worker"},
		{"cache", "nix-store --serve", false, "serve"},
		{"ops", "uptime", false, ""},
		{"nobody", "nix-daemon --stdio", false, ""},
	}
	for _, tt := range tests {
		v := Decide(Request{Engine: e, Request: policy.Request{Key: tt.key, Command: tt.command}, Mode: Serve})
		attrs := v.LogAttrs()
		if len(attrs)%2 != 0 {
			t.Errorf("Decide(%q, %q).LogAttrs() = %v; want key-value pairs", tt.key, tt.command, attrs)
		}
		if !hasAttr(attrs, "role", v.Decision.Role) {
			t.Errorf("Decide(%q, %q).LogAttrs() = %v; want the role", tt.key, tt.command, attrs)
		}
		if got := hasKey(attrs, "full_trust"); got != tt.fullTrust {
			t.Errorf("Decide(%q, %q).LogAttrs() = %v; full_trust logged %v, want %v", tt.key, tt.command, attrs, got, tt.fullTrust)
		}
		if tt.fullTrust && !hasAttr(attrs, "full_trust", true) {
			t.Errorf("Decide(%q, %q).LogAttrs() = %v; want full_trust true", tt.key, tt.command, attrs)
		}
		if tt.protocol == "" && hasKey(attrs, "protocol") || tt.protocol != "" && !hasAttr(attrs, "protocol", tt.protocol) {
			t.Errorf("Decide(%q, %q).LogAttrs() = %v; want protocol %q", tt.key, tt.command, attrs, tt.protocol)
		}
		if hasKey(attrs, "lix_command") {
			t.Errorf("Decide(%q, %q).LogAttrs() = %v; want no lix_command", tt.key, tt.command, attrs)
		}
	}
}

func TestVerdictFilter(t *testing.T) {
	e := testEngine(t)
	for _, cmd := range []string{"nix-daemon --stdio", "nix-store --serve --write"} {
		v := Decide(Request{Engine: e, Request: policy.Request{Key: "ci", Command: cmd}, Mode: Serve})
		if v.Kind != RunNix {
			t.Fatalf("Decide(ci, %q).Kind = %v (%q); want RunNix", cmd, v.Kind, v.Message)
		}
		if f := v.Filter(io.Discard, nil, nil, nil, nil); f == nil {
			t.Errorf("Decide(ci, %q).Filter(io.Discard, nil, nil) = nil; want a filter", cmd)
		}
	}
}

func TestZeroVerdict(t *testing.T) {
	var v Verdict
	if v.Kind != Refuse {
		t.Errorf("Verdict{}.Kind = %v; want Refuse", v.Kind)
	}
	if attrs := v.LogAttrs(); hasKey(attrs, "protocol") || hasKey(attrs, "full_trust") {
		t.Errorf("Verdict{}.LogAttrs() = %v; want no protocol or full_trust", attrs)
	}
}

// TestDecideLixRevokedDuringDialogue: the command Lix sends on stdin was
// decided by the configuration captured before the dialogue, so a key
// revoked meanwhile could still run nix-store --serve --write.
func TestDecideLixRevokedDuringDialogue(t *testing.T) {
	before := testEngine(t)
	revoked, err := policy.Parse("revoked.toml", []byte("user = \"nixremote\"\n[[keys]]\nname = \"cache\"\nrole = \"substitute\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	after := policy.NewEngine(revoked)
	var live *policy.Engine // swapped while the dialogue runs
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	done := make(chan Verdict, 1)
	go func() {
		done <- Decide(Request{
			Engine:  before,
			Request: policy.Request{Key: "ci", Command: "bash"},
			Mode:    Exec,
			Stdin:   stdinR,
			Stdout:  stdoutW,
			Live:    func() *policy.Engine { return live },
		})
	}()
	io.WriteString(stdinW, "echo started\n")
	line := make([]byte, len("started\n"))
	if _, err := io.ReadFull(stdoutR, line); err != nil || string(line) != "started\n" {
		t.Fatalf("dialogue: %q, %v", line, err)
	}
	live = after // the key is revoked (a reload) before Lix sends its command
	io.WriteString(stdinW, "exec nix-store --serve --write\n")
	v := <-done
	if v.Kind != Refuse || !strings.Contains(v.Message, `key "ci" is not configured`) || v.Config != revoked {
		t.Fatalf("Decide = %v %q (config %v); want refused by the live configuration", v.Kind, v.Message, v.Config)
	}

	// A nil live engine (say, the file no longer loads) refuses too.
	v = Decide(Request{Engine: before, Request: policy.Request{Key: "ci", Command: "bash"}, Mode: Exec,
		Stdin: strings.NewReader("echo started\nexec nix-store --serve --write\n"), Stdout: io.Discard,
		Live: func() *policy.Engine { return nil }})
	if v.Kind != Refuse {
		t.Fatalf("Decide with a nil live engine = %v %q; want refused", v.Kind, v.Message)
	}
}

// TestDecideLixDeadline: the dialogue had no deadline, so a client that
// sent "bash" and nothing more held the session for ever.
func TestDecideLixDeadline(t *testing.T) {
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	start := time.Now()
	v := Decide(Request{
		Engine:     testEngine(t),
		Request:    policy.Request{Key: "ci", Command: "bash"},
		Mode:       Exec,
		Stdin:      stdinR,
		Stdout:     io.Discard,
		LixTimeout: 200 * time.Millisecond,
	})
	if v.Kind != Refuse || !strings.Contains(v.Message, "Lix start-up: no command within 200ms") {
		t.Fatalf("Decide = %v %q; want refused for the deadline", v.Kind, v.Message)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Decide took %s", d)
	}
}

// TestDecideDraining checks that a draining builder refuses every session
// that would run Nix, or start Lix's dialogue, with the drain's line, and
// lets the operator's shell in; and that denials keep their own reason.
func TestDecideDraining(t *testing.T) {
	e := testEngine(t)
	for _, draining := range []bool{false, true} {
		calls := 0
		drain := func() (bool, string) { calls++; return draining, "builder draining: kernel update" }
		tests := []struct {
			key, command string
			mode         Mode
			kind         Kind   // when draining
			message      string // when draining
		}{
			{"ci", "nix-store --serve --write", Serve, Refuse, "builder draining: kernel update"},
			{"ci", "nix-daemon --stdio", Exec, Refuse, "builder draining: kernel update"},
			{"cache", "nix-store --serve --write", Exec, Refuse, "builder draining: kernel update"},
			{"ci", "bash", Serve, Refuse, "builder draining: kernel update"},
			{"ops", "", Serve, Shell, ""},
			{"ci", "rm -rf /", Serve, Refuse, "refused: "},
			{"nobody", "nix-daemon --stdio", Serve, Refuse, "refused: "},
		}
		for _, tt := range tests {
			v := Decide(Request{Engine: e, Request: policy.Request{Key: tt.key, Command: tt.command}, Mode: tt.mode, Draining: drain})
			kind, message := tt.kind, tt.message
			if !draining && tt.kind == Refuse && strings.HasPrefix(tt.message, "builder draining") {
				kind, message = RunNix, ""
				if tt.command == "bash" {
					// Lix's dialogue without stdin is refused for that.
					kind, message = Refuse, "Lix"
				}
			}
			if v.Kind != kind || !strings.Contains(v.Message, message) || v.Draining != (draining && strings.HasPrefix(message, "builder draining")) {
				t.Errorf("draining=%v Decide(%s, %q) = kind %v, %q, draining %v; want kind %v, %q", draining, tt.key, tt.command, v.Kind, v.Message, v.Draining, kind, message)
			}
		}
		if calls != 4 {
			t.Errorf("draining=%v: Draining called %d times; want 4 (only for sessions that would run Nix)", draining, calls)
		}
	}
	// Nil Draining never drains.
	if v := Decide(Request{Engine: e, Request: policy.Request{Key: "ci", Command: "nix-daemon --stdio"}, Mode: Serve}); v.Kind != RunNix {
		t.Errorf("Decide without Draining = %+v; want RunNix", v)
	}
}

// TestDecideUnhealthy checks that an unhealthy builder refuses every
// session that would run Nix, or start Lix's dialogue, with
// "builder unhealthy: REASON", lets the operator's shell in, keeps the
// reasons of denials, and that a drain is said before ill health.
func TestDecideUnhealthy(t *testing.T) {
	e := testEngine(t)
	calls := 0
	health := func() (bool, string) { calls++; return false, "store /nix/store is not writable" }
	const want = "builder unhealthy: store /nix/store is not writable"
	for _, tt := range []struct {
		key, command string
		mode         Mode
		kind         Kind
		message      string
	}{
		{"ci", "nix-store --serve --write", Serve, Refuse, want},
		{"ci", "nix-daemon --stdio", Exec, Refuse, want},
		{"cache", "nix-store --serve --write", Exec, Refuse, want},
		{"ci", "bash", Serve, Refuse, want},
		{"ops", "", Serve, Shell, ""},
		{"ci", "rm -rf /", Serve, Refuse, "refused: "},
		{"nobody", "nix-daemon --stdio", Serve, Refuse, "refused: "},
	} {
		v := Decide(Request{Engine: e, Request: policy.Request{Key: tt.key, Command: tt.command}, Mode: tt.mode, Health: health})
		if v.Kind != tt.kind || !strings.Contains(v.Message, tt.message) || v.Unhealthy != (tt.message == want) {
			t.Errorf("Decide(%s, %q) = kind %v, %q, unhealthy %v; want kind %v, %q", tt.key, tt.command, v.Kind, v.Message, v.Unhealthy, tt.kind, tt.message)
		}
		if v.Unhealthy && !slices.Contains(v.LogAttrs(), any("unhealthy")) {
			t.Errorf("LogAttrs() = %v; want unhealthy", v.LogAttrs())
		}
	}
	if calls != 4 {
		t.Errorf("Health called %d times; want 4 (only for sessions that would run Nix)", calls)
	}
	drain := func() (bool, string) { return true, "builder draining" }
	if v := Decide(Request{Engine: e, Request: policy.Request{Key: "ci", Command: "nix-daemon --stdio"}, Mode: Serve, Draining: drain, Health: health}); !v.Draining || v.Unhealthy {
		t.Errorf("Decide(draining and unhealthy) = %+v; want the drain", v)
	}
	healthy := func() (bool, string) { return true, "" }
	if v := Decide(Request{Engine: e, Request: policy.Request{Key: "ci", Command: "nix-daemon --stdio"}, Mode: Serve, Health: healthy}); v.Kind != RunNix {
		t.Errorf("Decide(healthy) = %+v; want RunNix", v)
	}
}

// TestDecideBusy checks that while every build slot is taken (and
// refuse_when_busy is set) a build key's Nix session is refused with the
// line, while a substitute key and the operator's shell still get in.
func TestDecideBusy(t *testing.T) {
	e := testEngine(t)
	const want = "builder busy: all 1 build slots are taken (max_builds)"
	busy := func() (bool, string) { return true, want }
	for _, tt := range []struct {
		key, command string
		kind         Kind
		busy         bool
	}{
		{"ci", "nix-store --serve --write", Refuse, true},
		{"ci", "nix-daemon --stdio", Refuse, true},
		{"cache", "nix-store --serve", RunNix, false},
		{"ops", "", Shell, false},
	} {
		v := Decide(Request{Engine: e, Request: policy.Request{Key: tt.key, Command: tt.command}, Mode: Serve, Busy: busy})
		if v.Kind != tt.kind || v.Busy != tt.busy || tt.busy && v.Message != want {
			t.Errorf("Decide(%s, %q) = kind %v, busy %v, %q; want kind %v, busy %v", tt.key, tt.command, v.Kind, v.Busy, v.Message, tt.kind, tt.busy)
		}
	}
}
