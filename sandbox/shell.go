package sandbox

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixgate/nixgate/policy"
)

// LoginShell returns the login shell of the account called name from
// /etc/passwd, or /bin/sh when it has none.
func LoginShell(name string) string {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return "/bin/sh"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) == 7 && fields[0] == name && fields[6] != "" {
			return fields[6]
		}
	}
	return "/bin/sh"
}

// Shell builds the command that gives account a its login shell (the
// operator's shell, role shell), with cfg's clean environment (see Env)
// and SHELL. It runs command with -c when command is not empty. On the
// terminal tty (nil: through pipes) TERM is set too, and without a
// command the shell starts as a login shell ("-sh"); start it with
// IO.Terminal set to tty.
func Shell(cfg *policy.Config, a Account, command string, tty *Terminal) *Command {
	shell := LoginShell(a.Name)
	env := append(Env(cfg.BinDirs(), a, cfg.Nix.Env), "SHELL="+shell)
	argv0 := shell
	if tty != nil {
		env = append(env, "TERM="+tty.Term)
		argv0 = filepath.Base(shell)
		if command == "" {
			argv0 = "-" + argv0 // a login shell
		}
	}
	argv := []string{argv0}
	if command != "" {
		argv = append(argv, "-c", command)
	}
	return &Command{Path: shell, Argv: argv, Env: env}
}
