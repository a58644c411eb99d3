package admission

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDrainRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if d, err := ReadDrain(dir); err != nil || d.On {
		t.Fatalf("ReadDrain(missing dir) = %+v, %v; want not draining", d, err)
	}
	if on, msg := Draining(dir); on {
		t.Fatalf("Draining(missing dir) = true, %q", msg)
	}
	if err := SetDrain(dir, "kernel update\nsecond line"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(DrainPath(dir))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("drain file: %v, %v; want mode 0644", fi, err)
	}
	d, err := ReadDrain(dir)
	if err != nil || !d.On || d.Reason != "kernel update second line" || d.Since.IsZero() {
		t.Fatalf("ReadDrain = %+v, %v", d, err)
	}
	if on, msg := Draining(dir); !on || msg != "builder draining: kernel update second line" {
		t.Errorf("Draining = %v, %q", on, msg)
	}
	// Setting again replaces the reason; no temporary file is left.
	if err := SetDrain(dir, ""); err != nil {
		t.Fatal(err)
	}
	if on, msg := Draining(dir); !on || msg != "builder draining" {
		t.Errorf("Draining = %v, %q; want builder draining", on, msg)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("state dir holds %d entries; want only the drain file", len(ents))
	}
	if err := ClearDrain(dir); err != nil {
		t.Fatal(err)
	}
	if on, _ := Draining(dir); on {
		t.Error("still draining after ClearDrain")
	}
	if err := ClearDrain(dir); err != nil {
		t.Errorf("ClearDrain twice: %v", err)
	}
}

// TestDrainUnreadableFailsClosed: a drain file nixgate cannot read still
// drains.
func TestDrainUnreadableFailsClosed(t *testing.T) {
	dir := t.TempDir()
	// A directory where the file should be cannot be read as one.
	if err := os.Mkdir(DrainPath(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	on, msg := Draining(dir)
	if !on || !strings.HasPrefix(msg, "builder draining") {
		t.Errorf("Draining(unreadable) = %v, %q; want draining", on, msg)
	}
	// A state_dir that is a file is no drain.
	f := filepath.Join(dir, "file")
	os.WriteFile(f, nil, 0o644)
	if on, _ := Draining(f); on {
		t.Error("Draining(a file as state_dir) = true")
	}
}

func TestCleanReason(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "",
		"  a\tb\r\nc \x1b[31m ":  "a b c [31m",
		strings.Repeat("é", 150): strings.Repeat("é", 100),
	} {
		if got := CleanReason(in); got != want {
			t.Errorf("CleanReason(%q) = %q; want %q", in, got, want)
		}
	}
}
