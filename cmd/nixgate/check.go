package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os/user"
	"strings"

	"github.com/nixgate/nixgate/check"
	"github.com/nixgate/nixgate/sandbox"
)

const checkExample = `Finds what is wrong with this builder: runs Nix as the build user, stats
the files, binds the listen addresses. Each finding is ok, warn or fail,
with the command that fixes it; the exit status is 1 when anything fails.
Run it as root to check everything as the build user.

Examples:
  nixgate check --config /etc/nixgate/nixgate.toml
  nixgate check --config /etc/nixgate/nixgate.toml --mode exec --json`

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check", "[--config FILE] [--mode serve|exec] [--json]", checkExample, stdout, stderr)
	config := fs.String("config", defaultConfigPath, "the nixgate configuration `file`")
	mode := fs.String("mode", "serve", "`serve` or exec: how nixgate runs here")
	ak := fs.String("authorized-keys", "", "the build account's OpenSSH authorized_keys `file` (exec mode; default ~/.ssh/authorized_keys)")
	asJSON := fs.Bool("json", false, "print JSON")
	onlySandbox := fs.Bool("only-sandbox", false, "")
	if ok, code := parseFlags(fs, args, stdout); !ok {
		return code
	}
	cfg, err := loadConfig(*config)
	if *onlySandbox {
		// Internal: check re-runs itself as the build user for this.
		if err == nil {
			var u *user.User
			if u, err = user.Current(); err == nil {
				err = sandbox.Check(cfg, sandbox.Account{Name: u.Username, Home: u.HomeDir})
			}
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitRefused
		}
		return exitOK
	}
	var results []check.Result
	if err != nil {
		results = []check.Result{{Name: "config", Status: check.Fail, Message: strings.TrimPrefix(err.Error(), "policy: "), Fix: "edit " + *config}}
	} else {
		results = append([]check.Result{{Name: "config", Status: check.OK, Message: fmt.Sprintf("%s is valid: user %s, %d key(s), sandbox %s", *config, cfg.User, len(cfg.Keys), cfg.Sandbox.Mode)}},
			check.Run(cfg, check.Options{Mode: check.Mode(*mode), AuthorizedKeys: *ak})...)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(results)
	} else {
		for _, r := range results {
			fmt.Fprintf(stdout, "%-4s  %-15s %s\n", strings.ToUpper(string(r.Status)), r.Name, r.Message)
			if r.Fix != "" && r.Status != check.OK {
				fmt.Fprintf(stdout, "      %-15s fix: %s\n", "", r.Fix)
			}
		}
	}
	if check.Failed(results) {
		return exitRefused
	}
	return exitOK
}
