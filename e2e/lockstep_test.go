package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// smuggle is how a client hides operations inside what a filter that
// follows its frames counts as payload, where Nix stands at the first
// frame header: three SyncWithGC (op 13, no arguments) of which the
// first is, to such a filter, a frame of 13 bytes; the next frame header
// it reads straddles two of Nix's words and comes out as hidden's first
// word (its op code) shifted left by 24 bits, a frame of hundreds of MiB
// that holds hidden, which Nix reads as operations.
//
// hidden starts with IsValidPath (op 1), so that frame is 16 MiB: the
// client sends the rest of it in zeros, the end marker and then an
// IsValidPath of its own, which a filter in step answers. (Nix, after
// hidden, reads operation 0 from the zeros and ends the connection.)
func smuggle(hidden []byte) []byte {
	const frame1At, frame1Len = 8 + 13 + 8, 1 << 24
	b := slices.Concat(u64s(13, 13, 13), hidden)
	b = append(b, make([]byte, frame1Len-(len(b)-frame1At))...)
	return append(b, u64s(0)...)
}

// smuggleWay is one of the ways found to make Nix read operations from
// bytes a filter passes as payload.
type smuggleWay struct {
	name string
	// trusted says whether the build account is in the daemon's
	// trusted-users for this way.
	trusted bool
	// minVersion is the oldest worker protocol the way applies to.
	minVersion uint64
	// attack returns the client's bytes, with hidden the operations to
	// hide; drv is the derivation the hidden build builds.
	attack func(hidden []byte, drv string) []byte
	// refusedOp is the operation nixgate's record names as refused;
	// empty when nixgate ends the session instead (record's filter
	// error then holds filterErr).
	refusedOp, filterErr string
}

var smuggleWays = []smuggleWay{
	{
		// A frame length of 2^32 or more: Nix cannot read it, drains
		// frames from the next word (here the end marker) and reads its
		// next operation from what follows.
		name: "frame of 4 GiB or more", trusted: true, minVersion: 1<<8 | 23,
		attack: func(hidden []byte, _ string) []byte {
			return slices.Concat(wop(44).u64(0, 0).b, u64s(1<<32|8, 0), hidden)
		},
		filterErr: "Nix reads frames of less than 4 GiB",
	},
	{
		// AddToStore with a content-address method Nix refuses after it
		// starts answering and before it reads the frames.
		name: "content-address method Nix refuses", trusted: true, minVersion: 1<<8 | 25,
		attack: func(hidden []byte, _ string) []byte {
			return slices.Concat(wop(7).str("smuggled", "fixed:bogus").strs().u64(0).b, smuggle(hidden))
		},
		refusedOp: "AddToStore",
	},
	{
		// AddBuildLog from a client Nix does not trust: refused after Nix
		// starts answering and before it reads the frames.
		name: "AddBuildLog untrusted", trusted: false, minVersion: 1<<8 | 23,
		attack: func(hidden []byte, drv string) []byte {
			return slices.Concat(wop(45).str(filepath.Base(drv)).b, smuggle(hidden))
		},
		refusedOp: "AddBuildLog",
	},
}

// TestSmuggledOps is the attack of issue 16: a build key hides a
// SetOptions with post-build-hook and a BuildPaths (or, for an account
// Nix does not trust, a BuildPaths alone) inside what nixgate once
// passed as payload. For each Nix (2.8 on the host, 2.26 and 2.34 in
// chroots), each way, each mode, at 1.23 and the Nix's own version,
// the control sends the same bytes to the daemon without nixgate and
// sees the hidden operations run (the hook as root, the hidden build);
// through nixgate neither ever runs and the session record names what
// nixgate refused, or why it ended the session.
func TestSmuggledOps(t *testing.T) {
	for _, n := range nixVersions(t) {
		for _, trusted := range []bool{true, false} {
			for _, mode := range []string{modeExec, modeServe} {
				t.Run(fmt.Sprintf("Nix%s/trusted=%v/%s", n.name, trusted, mode), func(t *testing.T) {
					testSmuggledOps(t, n, trusted, mode)
				})
			}
		}
	}
}

func testSmuggledOps(t *testing.T, n nixUnderTest, trusted bool, mode string) {
	b, d := newDaemonBuilderOf(t, mode, n, trusted)
	if mode == modeServe {
		b.waitHealthy(t, 1)
	}
	dir := filepath.Dir(d.socket) // the same path inside the chroot
	hook := filepath.Join(dir, "hook.sh")
	hookRan := filepath.Join(dir, "hook-ran")
	writeFile(t, hook, "#!/bin/sh\nid -u > "+d.inside(hookRan)+"\n", 0o755)
	// 1.23 and the Nix's own; 1.38 is lowered to Nix 2.8's 1.34.
	versions := []uint64{1<<8 | 23, n.protocol}
	if n.protocol != 1<<8|38 {
		versions = append(versions, 1<<8|38)
	}
	var mustNotRun []struct{ name, built string }
	for _, way := range smuggleWays {
		if way.trusted != trusted {
			continue
		}
		for _, v := range versions {
			if v < way.minVersion {
				continue
			}
			name := fmt.Sprintf("%s at %d.%d", way.name, v>>8, v&0xff)
			nonce := fmt.Sprint(strings.ReplaceAll(way.name, " ", "-"), "-", v&0xff, "-", mode, "-", time.Now().UnixNano())
			built := filepath.Join(dir, "built-"+nonce)
			drv := d.instantiateScript(t, nonce, "echo ran > "+d.inside(built)+"; echo "+nonce+" > $out")
			hidden := wop(9).strs(drv + "!out").u64(0).b
			if trusted {
				hidden = slices.Concat(setOptions("post-build-hook", d.inside(hook)), hidden)
			}
			hidden = slices.Concat(wop(1).str(drv).b, hidden)
			attack := way.attack(hidden, drv)

			// The control: Nix itself runs what is hidden.
			c := d.stdioWorker(t, b.account.uid, b.account.gid, v)
			// Nix ends the connection when it reads operation 0 from the
			// zeros after hidden: the rest of the write may fail.
			go c.w.Write(attack)
			if !waitForFile(built, logWait) {
				t.Fatalf("%s: control: the hidden build did not run without nixgate: the attack is not reproduced\ndaemon log:\n%s", name, d.daemonLog(t))
			}
			if trusted && !waitForFile(hookRan, logWait) {
				t.Fatalf("%s: control: the hidden post-build-hook did not run without nixgate", name)
			}
			c.kill()
			os.Remove(built)
			os.Remove(hookRan)
			mustNotRun = append(mustNotRun, struct{ name, built string }{name, built})

			// Through nixgate: the same bytes. nixgate refuses the
			// operation and stays in step (the client's IsValidPath after
			// it is answered), or ends the session.
			start := time.Now()
			c = b.dialWorker(t, "build", v)
			c.send(attack)
			if way.refusedOp != "" {
				c.send(wop(1).str(drv).b)
				if msg, failed := c.stderrUntilLast(); !failed || !strings.Contains(msg, way.refusedOp+" refused") {
					t.Errorf("%s: the client got %q (error %v); want nixgate's refusal of %s", name, msg, failed, way.refusedOp)
				}
				if ok, err := c.isValid(drv); err != nil || !ok {
					t.Errorf("%s: IsValidPath after the refusal = %v, %v; want the session in step", name, ok, err)
				}
			} else if !c.endsWithin(logWait) {
				t.Errorf("%s: the session did not end", name)
			}
			c.close()
			rec := findRecord(t, b, logWait, func(r map[string]any) bool {
				if r["msg"] != "session ended" || r["key"] != "build" || recordTime(r).Before(start) {
					return false
				}
				if way.refusedOp != "" {
					return fmt.Sprint(r["refused_ops"]) == "["+way.refusedOp+"]"
				}
				return strings.Contains(fmt.Sprint(r["filter"]), way.filterErr)
			})
			if rec == nil {
				t.Errorf("%s: no session record names %q %q:\n%s", name, way.refusedOp, way.filterErr, readFile(t, b.log))
			}
		}
	}
	// The sessions are over, and with them Nix's; what the controls
	// showed runs within moments must not have run, given a moment more.
	time.Sleep(2 * time.Second)
	for _, m := range mustNotRun {
		if _, err := os.Stat(m.built); err == nil {
			t.Errorf("%s: through nixgate the hidden build ran", m.name)
		}
	}
	if got, err := os.ReadFile(hookRan); err == nil {
		t.Errorf("through nixgate the post-build-hook ran as uid %s", strings.TrimSpace(string(got)))
	}
}

// waitForFile reports whether path exists within d.
func waitForFile(path string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recordTime is when a log record was written; zero if it does not say.
func recordTime(r map[string]any) time.Time {
	s, _ := r["time"].(string)
	tm, _ := time.Parse(time.RFC3339Nano, s)
	return tm
}

// TestPayloadRefusedEndsSession: when Nix answers an operation that
// carries a payload with an error, nixgate cannot know how much of the
// payload Nix read, and ends the session: a raw client's AddToStoreNar
// of a path without a signature, from an account Nix does not trust,
// which every Nix refuses after it starts answering. The client gets
// Nix's error and nothing after it (the IsValidPath it sent next is not
// answered), and the session record says why it ended. Against Nix 2.8,
// 2.26 and 2.34, in both modes, at 1.23 and each Nix's own version.
func TestPayloadRefusedEndsSession(t *testing.T) {
	for _, n := range nixVersions(t) {
		for _, mode := range []string{modeExec, modeServe} {
			t.Run(fmt.Sprintf("Nix%s/%s", n.name, mode), func(t *testing.T) {
				b, _ := newDaemonBuilderOf(t, mode, n, false)
				if mode == modeServe {
					b.waitHealthy(t, 1)
				}
				for _, v := range []uint64{1<<8 | 23, n.protocol} {
					start := time.Now()
					nar := narOf("unsigned")
					path := "/nix/store/" + strings.Repeat("1", 32) + "-unsigned"
					c := b.dialWorker(t, "build", v)
					c.send(wop(39).str(path, "", strings.Repeat("0", 64)).strs().
						u64(0, uint64(len(nar)), 0).strs().str("").u64(0, 0).framed(nar).b)
					c.send(wop(1).str(path).b)
					msg, failed := c.stderrUntilLast()
					if !failed || !strings.Contains(msg, "signature") {
						t.Errorf("%d.%d: the client got %q (error %v); want Nix's refusal of the unsigned path", v>>8, v&0xff, msg, failed)
					}
					if !c.endsWithin(logWait) {
						t.Errorf("%d.%d: the session went on after Nix refused a payload", v>>8, v&0xff)
					}
					c.close()
					rec := findRecord(t, b, logWait, func(r map[string]any) bool {
						return r["msg"] == "session ended" && r["key"] == "build" && !recordTime(r).Before(start) &&
							strings.Contains(fmt.Sprint(r["filter"]), "Nix refused AddToStoreNar")
					})
					if rec == nil {
						t.Errorf("%d.%d: no session record says Nix refused AddToStoreNar:\n%s", v>>8, v&0xff, readFile(t, b.log))
					}
				}
			})
		}
	}
}
