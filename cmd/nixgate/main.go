// Command nixgate is the SSH front door of a Nix remote builder: it lets
// Nix clients run nix-store --serve and nix-daemon --stdio, and nothing
// else. See README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
	keyusage "github.com/nixgate/nixgate/usage"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = []command{
	{"serve", "run the builder's SSH server", runServe},
	{"exec", "run one Nix command as an OpenSSH forced command", runExec},
	{"keys", "generate, authorize, list and revoke keys; show the host key", runKeys},
	{"client-config", "print what a Nix client needs to use this builder", runClientConfig},
	{"check", "find what is wrong with this builder, and how to fix it", runCheck},
	{"drain", "take this builder out of rotation, or put it back (--off)", runDrain},
	{"usage", "show what each key used: sessions, builds, bytes, refusals", runUsage},
	{"log", "show the build log kept of a derivation built here", runLog},
	{"status", "show what the builder is doing now: slots, queue, sessions", runStatus},
	{"user-chroot", "run a command with DIR as /nix, like nix-user-chroot", runUserChroot},
	{"version", "print the version", runVersion},
}

// Exit statuses.
const (
	exitOK      = 0
	exitRefused = 1 // a refusal, or an error at run time
	exitUsage   = 2 // a bad command line
)

func main() {
	// Linked or copied as nix-user-chroot, nixgate is one: the
	// nix-user-chroot sandbox mode can then use it.
	if filepath.Base(os.Args[0]) == "nix-user-chroot" {
		os.Exit(runUserChroot(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	// The sandbox helpers nixgate re-executes itself as; not for people.
	switch args[0] {
	case sandbox.HelperCommand:
		return sandbox.HelperMain(args[1:], stderr)
	case sandbox.HomeCheckCommand:
		return sandbox.HomeCheckMain(args[1:], stdout, stderr)
	case keyusage.ChildCommand:
		return keyusage.ChildMain(args[1:], os.Stdin, stdout, stderr)
	case admission.RuntimeDirCheckCommand:
		return admission.RuntimeDirCheckMain(args[1:], stdout, stderr)
	case sandbox.NestCommand:
		code, err := sandbox.NestMain(args[1:])
		if err != nil {
			fmt.Fprintln(stderr, "nixgate: "+policy.Line(err))
			return 126
		}
		return code
	}
	fmt.Fprintf(stderr, "nixgate: unknown command %q (see nixgate --help)\n", args[0])
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "nixgate lets Nix clients use this machine as a remote builder and store over SSH, and nothing else.")
	fmt.Fprintln(w, "\nUsage: nixgate COMMAND [options]\n\nCommands:")
	width := 0
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	for _, c := range commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun nixgate COMMAND --help for a command's options and an example.")
}

// newFlagSet returns a FlagSet whose --help prints the usage text, an
// example and the options to stdout.
func newFlagSet(name, usageLine, example string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("nixgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: nixgate %s %s\n\n%s\n\nOptions:\n", name, usageLine, example)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, which must be flags only; it reports whether
// to go on, and the exit status to use when not.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (bool, int) {
	ok, code := parseFlagsAndArgs(fs, args, stdout)
	if ok && fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return false, exitUsage
	}
	return ok, code
}

// parseFlagsAndArgs is parseFlags for a command that also takes
// arguments after its flags (fs.Args()).
func parseFlagsAndArgs(fs *flag.FlagSet, args []string, stdout io.Writer) (bool, int) {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return false, exitOK
		}
	}
	if err := fs.Parse(optionsFirst(fs, args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, exitOK
		}
		return false, exitUsage
	}
	return true, exitOK
}

// optionsFirst moves the options of args before its other arguments, so
// that "keys authorize ci.pub --name ci --role build" is read as it was
// meant: Go's flag package stops at the first argument that is not an
// option. After "--" everything is an argument.
func optionsFirst(fs *flag.FlagSet, args []string) []string {
	var opts, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			rest = append(rest, args[i+1:]...)
			i = len(args)
		case len(a) > 1 && a[0] == '-':
			opts = append(opts, a)
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			f := fs.Lookup(name)
			if f == nil {
				continue // fs.Parse says it is unknown
			}
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
				continue
			}
			if i+1 < len(args) { // the option's value
				i++
				opts = append(opts, args[i])
			}
		default:
			rest = append(rest, a)
		}
	}
	return append(append(opts, "--"), rest...)
}
