package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigAnyoneCanChangeRefused: a configuration the build account,
// or anyone, can change, or a state_dir the account can change (its
// drain; serve's generated host key), is refused by every entry point, wherever its
// path came from: nixgate check fails it given relative to the working
// directory (cd /etc/nixgate && nixgate check --config nixgate.toml
// skipped the check before), exec mode runs nothing, serve refuses to
// start on it through a symbolic link, and a serve whose configuration
// becomes so keeps the old one on reload. Each says what and how to fix.
func TestConfigAnyoneCanChangeRefused(t *testing.T) {
	for _, how := range []struct {
		name   string
		change func(t *testing.T, b *builder)
		what   string // the file, as the message names it: %c the configuration, %s state_dir
		by     string // %a: the account
	}{
		{"world-writable", func(t *testing.T, b *builder) { os.Chmod(b.config, 0o666) }, "configuration %c", "can be changed by anyone on this machine"},
		{"the account's", func(t *testing.T, b *builder) { b.account.chown(t, b.config) }, "configuration %c", "can be changed by %a"},
		// state_dir holds the drain and serve's generated host key.
		{"state_dir the account's", func(t *testing.T, b *builder) { b.account.chown(t, filepath.Join(b.root, "serve-state")) }, "drain state %s/drain", "can be changed by %a"},
	} {
		t.Run(how.name, func(t *testing.T) {
			b := newBuilder(t, modeExec)
			rp := strings.NewReplacer("%a", b.account.name, "%c", b.config, "%s", filepath.Join(b.root, "serve-state"))
			by := rp.Replace(how.by)
			says := rp.Replace(how.what) + " " + by
			b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("build"))
			how.change(t, b)

			// check, with the path relative to the working directory.
			cmd := exec.Command(nixgateBin, "check", "--json", "--config", filepath.Base(b.config))
			cmd.Dir = filepath.Dir(b.config)
			out, _ := cmd.Output()
			var rs []checkResult
			if err := json.Unmarshal(out, &rs); err != nil {
				t.Fatalf("nixgate check output is not JSON: %v\n%s", err, out)
			}
			finding(t, rs, "files", "fail", says, "chmod")

			// exec mode: nothing runs, the client is told.
			r := b.ssh(t, "build", "nix-store --serve --write", nil)
			if r.code == 0 || !strings.Contains(r.stderr, says) || !strings.Contains(r.stderr, "fix: ") {
				t.Errorf("an exec session on it: %s; want it refused, saying %q and the fix", r, says)
			}

			// serve, through a symbolic link: refuses to start.
			link := filepath.Join(b.root, "link.toml")
			os.Symlink(b.config, link)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			serve := exec.CommandContext(ctx, nixgateBin, "serve", "--config", link)
			msg, err := serve.CombinedOutput()
			// The configuration is named by the link it was given as.
			what := strings.Fields(how.what)[0]
			if ctx.Err() != nil || err == nil || !strings.Contains(string(msg), what) || !strings.Contains(string(msg), by) {
				t.Errorf("serve --config %s: %v %s; want it refused at start, saying %q and %q", link, err, msg, what, by)
			}
		})
	}

	// A running serve keeps its configuration when the file becomes one
	// anyone can change, and says why.
	t.Run("reload", func(t *testing.T) {
		b := newBuilder(t, modeServe)
		start := time.Now()
		os.Chmod(b.config, 0o666)
		os.Chtimes(b.config, time.Now(), time.Now()) // a change to reload on
		if findRecord(t, b, logWait, func(r map[string]any) bool {
			return r["msg"] == "reload failed, keeping the old configuration" && !recordTime(r).Before(start) &&
				strings.Contains(strings.ReplaceAll(r["reason"].(string), "\n", " "), "can be changed by anyone")
		}) == nil {
			t.Errorf("no record of the reload refused:\n%s", readFile(t, b.log))
		}
		b.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+b.Host("build"))
	})
}
