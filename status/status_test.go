package status

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/nixgate/nixgate/admission"
)

func TestText(t *testing.T) {
	now := time.Date(2026, 12, 7, 14, 2, 11, 0, time.UTC)
	since := now.Add(-118 * time.Second)
	st := Status{Mode: "serve", Time: now, Healthy: true,
		Slots: admission.View{MaxBuilds: 1, Running: map[string]int{"ci": 1}, Queue: []admission.Queued{{Key: "laptop", Since: now.Add(-41 * time.Second)}}},
		Sessions: []Session{
			{Key: "ci", Remote: "192.0.2.7", Started: now.Add(-123 * time.Second), Building: []string{"/nix/store/x-hello.drv"}, BuildStarted: &since, BytesIn: 13 << 20, BytesOut: 3 << 10},
			{Key: "laptop", Remote: "192.0.2.9", Started: now.Add(-41 * time.Second), BytesIn: 1200, BytesOut: 212},
		}}
	var b bytes.Buffer
	st.Text(&b)
	for _, want := range []string{
		"nixgate serve, taking sessions, at 14:02:11\n",
		"builds: 1 running (of 1): ci 1; 1 waiting\n",
		"  1  laptop  41s",
		"sessions: 2\n",
		"  ci      2m3s  192.0.2.7  13.0M  3.0K  /nix/store/x-hello.drv (1m58s)",
		"  laptop  41s   192.0.2.9  1.2K   212B  -",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("Text lacks %q:\n%s", want, b.String())
		}
	}
	st.Draining, st.DrainReason = true, "kernel update"
	b.Reset()
	st.Text(&b)
	if !strings.HasPrefix(b.String(), "nixgate serve, draining: kernel update, at") {
		t.Errorf("draining: %q", b.String())
	}
}

// FuzzText: whatever names exec mode's lock directory (the build
// account's to write) holds, the text view sends the terminal no control
// character but its line ends.
func FuzzText(f *testing.F) {
	f.Add("ci", "\x1b]0;pwned\x07", "/nix/store/x.drv")
	f.Add("\xff\xfe", "\u2028", "\x9b31m")
	f.Fuzz(func(t *testing.T, key, reason, drv string) {
		st := Status{Mode: "exec", Time: time.Now(), Draining: true, DrainReason: reason,
			Slots:    admission.View{Running: map[string]int{key: 1}, Queue: []admission.Queued{{Key: key}}},
			Sessions: []Session{{Key: key, Remote: reason, Building: []string{drv}}}}
		var b bytes.Buffer
		st.Text(&b)
		for _, r := range b.String() {
			if r != '\n' && (unicode.IsControl(r) || r == '\u2028' || r == '\u2029') {
				t.Fatalf("control character %U in:\n%q", r, b.String())
			}
		}
	})
}
