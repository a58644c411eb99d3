package policy

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestLixBootstrap(t *testing.T) {
	e := testEngine(t)
	req := Request{Key: "build", Command: "bash"}
	d := e.Decide(req)
	if !d.LixBootstrap || d.Allow {
		t.Fatalf("Decide(bash) = %+v; want LixBootstrap and not allowed", d)
	}
	// The bytes Lix 2.93.0 writes, followed by the start of the serve
	// protocol, which must be left unread.
	protocol := "\xeb\x9d\x0c\x39\x00\x00\x00\x00"
	in := strings.NewReader("echo started\nexec nix-store --serve --write --store '" + testStores.Allowed + "'\n" + protocol)
	var out bytes.Buffer
	cmd, err := ReadLixBootstrap(in, &out)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "started\n" {
		t.Errorf("reply = %q; want %q", out.String(), "started\n")
	}
	rest, _ := io.ReadAll(in)
	if string(rest) != protocol {
		t.Errorf("left unread %q; want %q", rest, protocol)
	}
	d = e.Decide(req.AfterLixBootstrap(cmd))
	if !d.Allow || d.Args[len(d.Args)-1] != testStores.Allowed {
		t.Errorf("Decide(after bootstrap) = %+v", d)
	}
	if d := e.Decide(req.AfterLixBootstrap("bash")); d.LixBootstrap || d.Allow {
		t.Errorf("bash after bootstrap = %+v; want plain denial", d)
	}
}

func TestLixBootstrapRefusals(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"not echo", "id\n", "want \"echo started\""},
		{"not exec", "echo started\nrm -rf ~\n", "want \"exec COMMAND\""},
		{"closed", "echo started\nexec nix-store", "closed before a full line"},
		{"too long", "echo started\nexec " + strings.Repeat("x", MaxCommandLen+10) + "\n", "longer than"},
		{"empty", "", "closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadLixBootstrap(strings.NewReader(tt.in), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ReadLixBootstrap(%.40q) = %v; want error containing %q", tt.in, err, tt.want)
			}
		})
	}
}

func FuzzReadLixBootstrap(f *testing.F) {
	f.Add("echo started\nexec nix-store --serve --write\n")
	f.Add("echo started\nexec nix-daemon --stdio --store 'a'\\''b'\n")
	f.Fuzz(func(t *testing.T, in string) {
		cmd, err := ReadLixBootstrap(strings.NewReader(in), io.Discard)
		if err == nil && !strings.HasPrefix(in, "echo started\nexec "+cmd+"\n") {
			t.Fatalf("ReadLixBootstrap(%q) = %q; not what was sent", in, cmd)
		}
	})
}
