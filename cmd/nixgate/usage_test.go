package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	keyusage "github.com/nixgate/nixgate/usage"
)

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.Local)
	for _, tt := range []struct {
		in   string
		want time.Time
		bad  bool
	}{
		{"", time.Time{}, false},
		{"90m", now.Add(-90 * time.Minute), false},
		{"24h", now.Add(-24 * time.Hour), false},
		{"7d", now.AddDate(0, 0, -7), false},
		{"2026-11-01", time.Date(2026, 11, 1, 0, 0, 0, 0, time.Local), false},
		{"2026-11-01T15:04", time.Date(2026, 11, 1, 15, 4, 0, 0, time.Local), false},
		{"2026-11-01T15:04:05Z", time.Date(2026, 11, 1, 15, 4, 5, 0, time.UTC), false},
		{"-1h", time.Time{}, true},
		{"yesterday", time.Time{}, true},
	} {
		got, err := parseSince(tt.in, now)
		if (err != nil) != tt.bad || !got.Equal(tt.want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v (error: %v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestUsageCommand(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.Mkdir(state, 0o700)
	cfgPath := filepath.Join(dir, "nixgate.toml")
	doc := "user = \"builder\"\nstate_dir = \"" + state + "\"\n[[keys]]\nname = \"ci\"\nrole = \"build\"\npublic_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\"\n"
	if err := os.WriteFile(cfgPath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"usage", "--config", cfgPath}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "no usage recorded") {
		t.Fatalf("empty store: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	old := time.Now().Add(-48 * time.Hour)
	keyusage.Add(state, "ci", old, keyusage.Counters{Sessions: 1, Builds: 1, BuildSeconds: 61, BytesIn: 2048, PathsImported: 2}, 0)
	keyusage.Add(state, "ci", time.Now(), keyusage.Counters{Sessions: 1}, 0)
	keyusage.Add(state, "dev", time.Now(), keyusage.Refusal, 0)

	out.Reset()
	if code := run([]string{"usage", "--config", cfgPath}, &out, &errOut); code != 0 {
		t.Fatalf("table: exit %d, stderr %q", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "BUILD TIME") || strings.Join(strings.Fields(lines[1]), " ") != "ci 2 1 1m1s 2.0 KiB 0 B 2 0" {
		t.Errorf("table:\n%s", out.String())
	}

	out.Reset()
	if code := run([]string{"usage", "--config", cfgPath, "--since", "24h", "--json"}, &out, &errOut); code != 0 {
		t.Fatalf("json: exit %d, stderr %q", code, errOut.String())
	}
	var report struct {
		Since *time.Time                   `json:"since"`
		Keys  map[string]keyusage.Counters `json:"keys"`
	}
	if err := json.Unmarshal(out.Bytes(), &report); err != nil {
		t.Fatalf("json: %v\n%s", err, out.String())
	}
	want := map[string]keyusage.Counters{"ci": {Sessions: 1}, "dev": {Refusals: 1}}
	if report.Since == nil || len(report.Keys) != 2 || report.Keys["ci"] != want["ci"] || report.Keys["dev"] != want["dev"] {
		t.Errorf("--since 24h --json: %s", out.String())
	}

	if code := run([]string{"usage", "--config", cfgPath, "--since", "soon"}, &out, &errOut); code != exitUsage {
		t.Errorf("--since soon: exit %d; want %d", code, exitUsage)
	}
}
