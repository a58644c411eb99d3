package check

import (
	"fmt"
	"strings"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/policy"
)

// checkHealth runs the health check that decides whether the builder
// takes new Nix sessions (the store writable by the build account, its
// free space above [admission] min_free, the daemon answering), as serve
// runs it every few seconds. A store it cannot check says nothing. A
// local store that serve makes at start, owned by the build account, is
// not judged writable by the directory it would be made in (the store
// check says it is missing).
func checkHealth(cfg *policy.Config, a *account, mode Mode) []Result {
	t, ok := admission.TargetFor(cfg, a.home, a.credential())
	if !ok {
		return nil
	}
	if mode != Exec && localStoreMissing(cfg.Nix.Store) {
		t.Write = false
	}
	h := admission.Check(t)
	if !h.OK {
		msg := fmt.Sprintf("new Nix sessions are refused with %q, so that Nix builds elsewhere", "nixgate: "+h.Message())
		fix := ""
		switch {
		case strings.Contains(h.Reason, "below min_free"):
			fix = fmt.Sprintf("free space on the file system of %s (nix-collect-garbage), or lower [admission] min_free", t.Dir)
		case strings.Contains(h.Reason, "not writable"):
			fix = fmt.Sprintf("chown %s %s", a.name, t.Dir)
		case t.Socket != "" && strings.Contains(h.Reason, t.Socket):
			fix = "systemctl restart nix-daemon.socket nix-daemon.service"
		}
		return []Result{{"health", Fail, msg, fix}}
	}
	var what []string
	if t.Dir != "" {
		s := fmt.Sprintf("store %s has %s free", t.Dir, admission.Size(h.Free))
		if t.MinFree > 0 {
			s += fmt.Sprintf(" (min_free %s)", admission.Size(t.MinFree))
		}
		if t.Write {
			s += ", writable by " + a.name
		}
		what = append(what, s)
	}
	if t.Socket != "" {
		what = append(what, "the Nix daemon answers at "+t.Socket)
	}
	return []Result{{"health", OK, strings.Join(what, "; "), ""}}
}
