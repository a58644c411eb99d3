package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// usageReport is nixgate usage --json.
type usageReport struct {
	Since *time.Time `json:"since"`
	Keys  map[string]struct {
		Sessions      int64   `json:"sessions"`
		Builds        int64   `json:"builds"`
		BuildSeconds  float64 `json:"build_seconds"`
		BytesIn       int64   `json:"bytes_in"`
		BytesOut      int64   `json:"bytes_out"`
		PathsImported int64   `json:"paths_imported"`
		Refusals      int64   `json:"refusals"`
	} `json:"keys"`
}

// TestUsage has real Nix 2.8 copy a path to the builder (key build),
// build remotely (key trusted), send a refused command (key build) and a
// refused operation (key substitute, nix copy --to on a read-only key);
// nixgate usage then reports exactly that, and agrees with the audit log
// session by session. In serve mode the report is read while serve runs,
// and the metrics say the same.
func TestUsage(t *testing.T) {
	forEachMode(t, func(t *testing.T, b *builder) {
		p := b.addPath(t, "usage", "counted\n")
		b.mustNix(t, "nix", "copy", "--to", "ssh://"+b.Host("build"), p)
		nonce := fmt.Sprint(time.Now().UnixNano())
		b.mustNix(t, "nix-build", writeDerivation(t, b.root, nonce), "--no-out-link", "-j0",
			"--builders", "ssh://"+b.Host("trusted")+" x86_64-linux - 1")
		if r := b.ssh(t, "build", "nix-store --gc", nil); r.code == 0 {
			t.Fatalf("nix-store --gc allowed: %s", r)
		}
		q := b.addPath(t, "usage-refused", "not counted\n")
		if r := b.nix(t, "nix", "copy", "--to", "ssh://"+b.Host("substitute"), q); r.code == 0 {
			t.Fatalf("nix copy --to with a substitute key succeeded: %s", r)
		}
		// The last session's record is written as it ends.
		if findRecord(t, b, logWait, func(r map[string]any) bool { return r["msg"] == "session ended" && r["key"] == "substitute" }) == nil {
			t.Fatal("no session record for key substitute")
		}

		r := mustRun(t, nil, nixgateBin, "usage", "--json", "--since", "1h", "--config", b.config)
		var rep usageReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("nixgate usage --json: %v\n%s", err, r.stdout)
		}

		// What the audit log says happened, key by key.
		type sums struct{ sessions, builds, imported, refusals, in int64 }
		logged := map[string]*sums{}
		for _, rec := range logRecords(t, b.log) {
			key, _ := rec["key"].(string)
			if key == "" {
				continue
			}
			s := logged[key]
			if s == nil {
				s = &sums{}
				logged[key] = s
			}
			switch {
			case rec["msg"] == "session ended":
				s.sessions++
				if n, ok := rec["builds"].(float64); ok {
					s.builds += int64(n)
				}
				if imp, ok := rec["imported"].(map[string]any); ok {
					s.imported += int64(imp["count"].(float64))
				}
				if n, ok := rec["refused_count"].(float64); ok {
					s.refusals += int64(n)
				}
				s.in += int64(rec["bytes_in"].(float64))
			case rec["msg"] == "refused" && rec["decision"] == "deny":
				s.refusals++
			}
		}
		if len(rep.Keys) != len(logged) {
			t.Errorf("usage has keys %v; the log %v", rep.Keys, logged)
		}
		for key, s := range logged {
			u := rep.Keys[key]
			if u.Sessions != s.sessions || u.Builds != s.builds || u.PathsImported != s.imported || u.Refusals != s.refusals || u.BytesIn != s.in {
				t.Errorf("usage of %s = %+v; the log says %+v", key, u, *s)
			}
		}

		// What the test did.
		build, trusted, sub := rep.Keys["build"], rep.Keys["trusted"], rep.Keys["substitute"]
		if build.Sessions != 1 || build.PathsImported != 1 || build.Builds != 0 || build.Refusals != 1 || build.BytesIn == 0 || build.BytesOut == 0 {
			t.Errorf("key build (one copy --to of one path, one refused command): %+v", build)
		}
		if trusted.Builds != 1 || trusted.BuildSeconds <= 0 || trusted.Sessions < 1 || trusted.Refusals != 0 {
			t.Errorf("key trusted (one remote build): %+v", trusted)
		}
		if sub.Refusals != 1 || sub.PathsImported != 0 || sub.Builds != 0 {
			t.Errorf("key substitute (one refused copy --to): %+v", sub)
		}

		// The table shows the same keys.
		table := mustRun(t, nil, nixgateBin, "usage", "--config", b.config).stdout
		t.Logf("nixgate usage:\n%s%s", table, r.stdout)
		for _, key := range []string{"build", "trusted", "substitute"} {
			if !strings.Contains(table, "\n"+key+" ") && !strings.Contains(table, " "+key+" ") {
				t.Errorf("table lacks key %s:\n%s", key, table)
			}
		}

		if b.mode == modeServe {
			for name, want := range map[string]float64{
				`nixgate_usage_builds_total{key="trusted"}`:             1,
				`nixgate_usage_paths_imported_total{key="build"}`:       1,
				`nixgate_usage_refusals_total{key="build"}`:             1,
				`nixgate_usage_refusals_total{key="substitute"}`:        1,
				`nixgate_usage_sessions_total{key="build"}`:             1,
				`nixgate_usage_sessions_total{key="trusted"}`:           float64(trusted.Sessions),
				`nixgate_usage_bytes_total{direction="in",key="build"}`: float64(build.BytesIn),
			} {
				if got := b.metric(t, name); got != want {
					t.Errorf("%s = %v; want %v", name, got, want)
				}
			}
		}
	})
}

// TestUsageExecUnwritable checks that exec mode, whose build account
// cannot write state_dir (owned by root here), still serves Nix: the
// session goes uncounted, with one warning in the log.
func TestUsageExecUnwritable(t *testing.T) {
	b := newBuilder(t, modeExec)
	// state_dir is root's; without a usage.db made for the account
	// there, the account cannot make one.
	state := filepath.Join(b.root, "serve-state")
	if err := os.Remove(filepath.Join(state, "usage.db")); err != nil {
		t.Fatal(err)
	}
	b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("build"))
	rec := findRecord(t, b, logWait, func(r map[string]any) bool { return r["msg"] == "usage not recorded" })
	if rec == nil || rec["key"] != "build" {
		t.Errorf("no warning that usage was not recorded:\n%s", readFile(t, b.log))
	}
	if _, err := os.Stat(filepath.Join(state, "usage.db")); err == nil {
		t.Error("usage.db written by the build account in a state_dir owned by root")
	}
}

// TestUsageExecStateDir lays out exec mode's state_dir as the README
// does, with the command check gives for a missing one: root's, with
// the account's usage.db (and lock directory) in it. Sessions are then
// counted, check says so, and the account cannot end a drain.
func TestUsageExecStateDir(t *testing.T) {
	b := newBuilder(t, modeExec)
	state := filepath.Join(b.root, "serve-state")
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", b.config, "--mode", "exec"}
	rs, _ := runCheck(t, args...)
	finding(t, rs, "usage", "warn", "state_dir "+state+" does not exist, so exec-mode sessions are not counted", "install -d -m 755 "+state+" && ")
	var fix string
	for _, r := range rs {
		if r.Name == "usage" {
			fix = r.Fix
		}
	}
	mustRun(t, nil, "sh", "-c", fix)

	rs, _ = runCheck(t, args...)
	finding(t, rs, "usage", "ok", "exec-mode sessions are counted in "+filepath.Join(state, "usage.db")+", which "+b.account.name+" can write", "")
	finding(t, rs, "files", "ok", "the drain state "+filepath.Join(state, "drain")+" cannot be changed by "+b.account.name, "")
	b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("build"))
	r := mustRun(t, nil, nixgateBin, "usage", "--json", "--config", b.config)
	var rep usageReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("nixgate usage --json: %v\n%s", err, r.stdout)
	}
	if rep.Keys["build"].Sessions != 1 {
		t.Errorf("nixgate usage after one session of key build: %+v", rep.Keys)
	}
	// The fix, run again, loses nothing: the session counted stays.
	mustRun(t, nil, "sh", "-c", fix)
	r = mustRun(t, nil, nixgateBin, "usage", "--json", "--config", b.config)
	rep = usageReport{}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("nixgate usage --json: %v\n%s", err, r.stdout)
	}
	if rep.Keys["build"].Sessions != 1 {
		t.Errorf("nixgate usage after check's fix ran again: %+v; want the one session kept", rep.Keys)
	}

	// A build runs as the account: it cannot take the drain away.
	b.drain(t, "--reason", "layout")
	asAccount := []string{"setpriv", "--reuid", fmt.Sprint(b.account.uid), "--regid", fmt.Sprint(b.account.gid), "--init-groups", "--"}
	for _, argv := range [][]string{{"rm", "-f", filepath.Join(state, "drain")}, {"mv", filepath.Join(state, "drain"), filepath.Join(state, "run", "drain")}} {
		if r := run(t, nil, nil, append(asAccount, argv...)...); r.code == 0 {
			t.Errorf("as %s, %q succeeded", b.account.name, argv)
		}
	}
	if r := b.ssh(t, "build", "nix-store --serve --write", nil); r.code == 0 || !strings.Contains(r.stderr, "nixgate: builder draining: layout") {
		t.Errorf("a session while draining: %s", r)
	}
}

// TestUsageExecDamaged: in exec mode the build account can write
// usage.db. Damaged by the account — its pages overwritten, which makes
// bbolt panic, or a branch page made its own child, which makes it
// recurse until Go's stack overflows, fatal to the process that reads
// it — the store costs nothing but the counting:
// sessions run, a refusal still prints its line and writes its record,
// the log says once that usage was not recorded and why, and nixgate
// usage says the store is damaged and how to start a new one.
func TestUsageExecDamaged(t *testing.T) {
	b := newBuilder(t, modeExec)
	state := filepath.Join(b.root, "serve-state")
	db := filepath.Join(state, "usage.db")
	b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("build"))
	// The exec process adds the session once its record is written,
	// into the empty usage.db the harness made for the account.
	deadline := time.Now().Add(logWait)
	for fi, err := os.Stat(db); err != nil || fi.Size() < 4*4096; fi, err = os.Stat(db) {
		if time.Now().After(deadline) {
			t.Fatalf("no usage.db written after a session:\n%s", readFile(t, b.log))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	good, err := os.ReadFile(db)
	if err != nil || len(good) < 4*4096 {
		t.Fatalf("usage.db after a session: %d bytes, %v\n%s", len(good), err, readFile(t, b.log))
	}
	for _, damage := range []struct {
		name string
		do   func([]byte) []byte
	}{
		{"pages overwritten", func(b []byte) []byte {
			for i := 2 * 4096; i < len(b); i++ {
				b[i] = byte(i*7 + 3)
			}
			return b
		}},
		{"a page its own child", func(b []byte) []byte {
			// The root bucket's page, by the newer of the two meta pages
			// (bbolt's layout: a 16-byte page header; the meta's root
			// page id at 16, its transaction id at 56), made a branch
			// page whose one child is itself.
			root, txid := uint64(0), uint64(0)
			for _, meta := range [][]byte{b[16:4096], b[4096+16 : 2*4096]} {
				if id := binary.LittleEndian.Uint64(meta[56:]); id >= txid {
					root, txid = binary.LittleEndian.Uint64(meta[16:]), id
				}
			}
			p := b[root*4096:]
			binary.LittleEndian.PutUint16(p[8:], 0x01) // a branch page
			binary.LittleEndian.PutUint16(p[10:], 1)   // of one element
			binary.LittleEndian.PutUint32(p[12:], 0)   // no overflow
			binary.LittleEndian.PutUint32(p[16:], 16)  // its key 16 bytes on
			binary.LittleEndian.PutUint32(p[20:], 1)   // one byte long
			binary.LittleEndian.PutUint64(p[24:], root)
			p[32] = 'h'
			return b
		}},
	} {
		t.Run(damage.name, func(t *testing.T) {
			damaged := damage.do(bytes.Clone(good))
			asAccount := []string{"setpriv", "--reuid", fmt.Sprint(b.account.uid), "--regid", fmt.Sprint(b.account.gid), "--init-groups", "--"}
			f := filepath.Join(b.root, "damaged.db")
			writeFile(t, f, string(damaged), 0o644)
			mustRun(t, nil, append(asAccount, "cp", f, db)...)
			start := time.Now()

			b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("build"))
			b.drain(t, "--reason", "damaged")
			r := b.ssh(t, "build", "nix-store --serve --write", nil)
			if r.code == 0 || !strings.Contains(r.stderr, "nixgate: builder draining: damaged") {
				t.Errorf("a session while draining: %s; want nixgate's refusal line", r)
			}
			mustRun(t, nil, nixgateBin, "drain", "--config", b.config, "--off")
			after := func(r map[string]any) bool { return !recordTime(r).Before(start) && r["key"] == "build" }
			if findRecord(t, b, logWait, func(r map[string]any) bool { return after(r) && r["msg"] == "session ended" }) == nil {
				t.Errorf("no record of the session:\n%s", readFile(t, b.log))
			}
			if findRecord(t, b, logWait, func(r map[string]any) bool { return after(r) && r["msg"] == "refused" }) == nil {
				t.Errorf("no record of the refusal:\n%s", readFile(t, b.log))
			}
			if findRecord(t, b, logWait, func(r map[string]any) bool {
				return after(r) && r["msg"] == "usage not recorded" && strings.Contains(fmt.Sprint(r["error"]), "move it aside")
			}) == nil {
				t.Errorf("no warning that usage was not recorded, with the fix:\n%s", readFile(t, b.log))
			}
			u := run(t, nil, nil, nixgateBin, "usage", "--config", b.config)
			if u.code == 0 || !strings.Contains(u.stderr, "move it aside") || strings.Contains(u.stderr, "panic") {
				t.Errorf("nixgate usage on the damaged store: %s; want the error with its fix", u)
			}
		})
	}
}
