package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/user"
	"regexp"
	"strings"

	"github.com/nixgate/nixgate/check"
	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
)

const checkExample = `Finds what is wrong with this builder: runs Nix as the build user, stats
the files, binds the listen addresses. Each finding is ok, warn or fail,
with the command that fixes it; the exit status is 1 when anything fails.
Run it as root to check everything as the build user.

Without --config it checks what nixgate serve would use: ` + defaultConfigPath + `,
or the embedded default (as make run uses it, in this directory) when that
does not exist; the first line says which.

Examples:
  nixgate check
  nixgate check --config /etc/nixgate/nixgate.toml
  nixgate check --config /etc/nixgate/nixgate.toml --mode exec --json`

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check", "[--config FILE | --embedded] [--mode serve|exec] [--json]", checkExample, stdout, stderr)
	config := fs.String("config", "", "the nixgate configuration `FILE` (default: what nixgate serve would use)")
	embedded := fs.Bool("embedded", false, "check the embedded default configuration, as nixgate serve --embedded (make run) uses it")
	mode := fs.String("mode", "serve", "how nixgate runs here: `MODE` serve or exec")
	ak := fs.String("authorized-keys", "", "the build account's OpenSSH authorized_keys `FILE` (exec mode; default ~/.ssh/authorized_keys)")
	sshdConfig := fs.String("sshd-config", "", "the `FILE` OpenSSH's sshd runs with (exec mode with [[cas]]; default "+check.DefaultSSHDConfig+")")
	asJSON := fs.Bool("json", false, "print JSON")
	onlySandbox := fs.Bool("only-sandbox", false, "only run the sandbox check (check runs itself again with it as the build user)")
	if ok, code := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if *mode != string(check.Serve) && *mode != string(check.Exec) {
		fmt.Fprintf(stderr, "nixgate check: --mode %q: want serve or exec\n", *mode)
		return exitUsage
	}
	if *embedded && *config != "" {
		fmt.Fprintln(stderr, "nixgate check: give --config or --embedded, not both")
		return exitUsage
	}
	src, err := serveSource(*config, *embedded, nil)
	var cfg *policy.Config
	if err == nil {
		cfg, err = src.load()
	}
	source := src.name()
	if *onlySandbox {
		// Internal: check re-runs itself as the build user for this.
		if err == nil {
			var u *user.User
			if u, err = user.Current(); err == nil {
				err = sandbox.Check(cfg, sandbox.Account{Name: u.Username, Home: u.HomeDir})
			}
		}
		if err != nil {
			fmt.Fprintln(stderr, policy.Line(err)) // what the calling check shows
			return exitRefused
		}
		return exitOK
	}
	what := source
	switch {
	case src.embedded() && *embedded:
		what = "the embedded default (nixgate serve --embedded, make run)"
	case src.embedded():
		what = "the embedded default (" + defaultConfigPath + " does not exist, so nixgate serve would use it)"
	case *config == "":
		what = source + " (what nixgate serve would use)"
	}
	var results []check.Result
	if err != nil {
		results = []check.Result{{Name: "config", Status: check.Fail, Message: what + ": " + policy.Line(err), Fix: configFix(err, source)}}
	} else {
		results = append([]check.Result{{Name: "config", Status: check.OK, Message: fmt.Sprintf("%s is valid: user %s, %d key(s), sandbox %s", what, cfg.User, len(cfg.Keys), cfg.Sandbox.Mode)}},
			check.Run(cfg, check.Options{Mode: check.Mode(*mode), AuthorizedKeys: *ak, GeneratesKey: src.embedded(), SSHDConfig: *sshdConfig})...)
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

// fileLineRE finds the file and line an error names ("/etc/x.toml:14:").
var fileLineRE = regexp.MustCompile(`(/[^\s:]+):(\d+):`)

// configFix is the fix check gives for a configuration that does not
// load: the file and line the error names (the keys file's, when it is
// there), or how to read a file check may not.
func configFix(err error, source string) string {
	if errors.Is(err, fs.ErrPermission) {
		return "run nixgate check as root (or as the user that may read " + source + ")"
	}
	if m := fileLineRE.FindStringSubmatch(policy.Line(err)); m != nil {
		return "edit " + m[1] + ", line " + m[2]
	}
	return "edit " + source
}
