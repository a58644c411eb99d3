package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// statusJSON is what nixgate status --json prints, in the parts the
// test reads.
type statusJSON struct {
	Mode     string `json:"mode"`
	Draining bool   `json:"draining"`
	Slots    struct {
		Running map[string]int `json:"builds_running"`
		Queue   []struct {
			Key   string    `json:"key"`
			Since time.Time `json:"since"`
		} `json:"queue"`
	} `json:"slots"`
	Sessions []struct {
		Key      string   `json:"key"`
		Building []string `json:"building"`
		BytesIn  uint64   `json:"bytes_in"`
		Pid      int      `json:"pid"`
	} `json:"sessions"`
}

// TestStatus: with a key's one build slot taken by a slow remote build
// and a second build of the key waiting, nixgate status shows, in both
// modes and both forms, the slot by key, the build waiting, and the two
// sessions (serve: the derivation being built and the bytes moved); its
// --watch view, driven in tmux, draws the same on a terminal.
func TestStatus(t *testing.T) {
	requireTools(t)
	forEachMode(t, func(t *testing.T, b *builder) {
		b.limitBuildKey(t, "max_builds = 1\n")
		nonce := fmt.Sprint(time.Now().UnixNano())
		first := writeSlowDerivation(t, b.root, nonce+"-a", 300)
		firstDrv := b.instantiate(t, first)
		b.startNix(t, "nix-build", first, "--no-out-link", "-j0", "--builders", "ssh-ng://"+b.Host("build")+" x86_64-linux - 1")
		status := func() statusJSON {
			t.Helper()
			r := run(t, nil, nil, nixgateBin, "status", "--json", "--config", b.config)
			var st statusJSON
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
				t.Fatalf("nixgate status --json: %s", r)
			}
			return st
		}
		waitFor(t, "the first build to hold the key's slot", 60*time.Second, func() bool { return status().Slots.Running["build"] == 1 })
		second := writeSlowDerivation(t, b.root, nonce+"-b", 300)
		// The clients share one store, where Nix counts a machine's jobs:
		// the second may run two there, so that it goes to the builder.
		b.startNix(t, "nix-build", second, "--no-out-link", "-j0", "--builders", "ssh-ng://"+b.Host("build")+" x86_64-linux - 2")
		waitFor(t, "the second build to wait", 60*time.Second, func() bool { return len(status().Slots.Queue) == 1 })

		st := status()
		if st.Mode != b.mode || st.Draining || st.Slots.Running["build"] != 1 || st.Slots.Queue[0].Key != "build" || time.Since(st.Slots.Queue[0].Since) > time.Minute {
			t.Errorf("status: %+v", st)
		}
		if len(st.Sessions) != 2 || st.Sessions[0].Key != "build" || st.Sessions[1].Key != "build" {
			t.Fatalf("sessions: %+v; want the two of key build", st.Sessions)
		}
		if b.mode == modeServe {
			if strings.Join(st.Sessions[0].Building, " ") != firstDrv || st.Sessions[0].BytesIn == 0 {
				t.Errorf("the first session: %+v; want it building %s, bytes moved", st.Sessions[0], firstDrv)
			}
		} else if st.Sessions[0].Pid == 0 {
			t.Errorf("exec mode's first session: %+v; want its nixgate's pid", st.Sessions[0])
		}

		text := run(t, nil, nil, nixgateBin, "status", "--config", b.config)
		for _, want := range []string{"nixgate " + b.mode + ", taking sessions", "builds: 1 running (no limit): build 1; 1 waiting", "queue (next first):", "sessions: 2"} {
			if text.code != 0 || !strings.Contains(text.stdout, want) {
				t.Errorf("nixgate status: %s; want %q", text, want)
			}
		}
		if b.mode == modeServe && !strings.Contains(text.stdout, firstDrv) {
			t.Errorf("nixgate status does not show %s being built:\n%s", firstDrv, text.stdout)
		}

		// The terminal view: tmux on a server of its own.
		sock := "nixgate-status-" + nonce
		tmux := func(args ...string) result {
			return run(t, nil, nil, append([]string{"tmux", "-L", sock}, args...)...)
		}
		if r := tmux("new-session", "-d", "-x", "160", "-y", "40", nixgateBin+" status --watch --config "+b.config); r.code != 0 {
			t.Fatalf("tmux: %s", r)
		}
		defer tmux("kill-server")
		var screen string
		waitFor(t, "the watch view to draw", 20*time.Second, func() bool {
			screen = tmux("capture-pane", "-p").stdout
			return strings.Contains(screen, "1 waiting")
		})
		if !strings.HasPrefix(strings.TrimLeft(screen, "\n"), "nixgate "+b.mode) || strings.Count(screen, "nixgate "+b.mode+",") != 1 {
			t.Errorf("the watch view does not redraw in place:\n%s", screen)
		}
	})
}
