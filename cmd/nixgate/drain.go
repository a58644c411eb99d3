package main

import (
	"fmt"
	"io"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/policy"
)

const drainExample = `Takes this builder out of rotation: new sessions are refused at connect
with one line, "nixgate: builder draining" and the reason, so that Nix
builds on the next machine of its machines file instead; sessions already
running finish. --off puts the builder back. Both serve and exec mode obey
it at once, with no reload; it lasts across restarts until --off. The state
is a file, ` + admission.DrainFileName + `, in the configuration's state_dir.

Without --config it uses what nixgate serve would use: ` + defaultConfigPath + `,
or the embedded default when that does not exist.

Examples:
  nixgate drain --reason "kernel update, back at 14:00"
  nixgate drain --off
  nixgate drain --config /etc/nixgate/nixgate.toml --off`

func runDrain(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("drain", "[--off] [--config FILE | --embedded] [--reason TEXT]", drainExample, stdout, stderr)
	configFile := fs.String("config", "", "the nixgate configuration `FILE` (default: what nixgate serve would use)")
	embedded := fs.Bool("embedded", false, "use the embedded default configuration, as nixgate serve --embedded (make run) does")
	off := fs.Bool("off", false, "end the drain: take new sessions again")
	reason := fs.String("reason", "", "one line of `TEXT` for the clients refused and the log")
	if ok, code := parseFlags(fs, args, stdout); !ok {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "nixgate drain: "+policy.Line(err))
		return exitRefused
	}
	if *embedded && *configFile != "" {
		fmt.Fprintln(stderr, "nixgate drain: give --config or --embedded, not both")
		return exitUsage
	}
	if *off && *reason != "" {
		fmt.Fprintln(stderr, "nixgate drain: --reason is for starting a drain, not with --off")
		return exitUsage
	}
	cfg, err := settingsOf(*configFile, *embedded)
	if err != nil {
		return fail(err)
	}
	dir := cfg.Serve.StateDir
	if *off {
		was, rerr := admission.ReadDrain(dir)
		if err := admission.ClearDrain(dir); err != nil {
			return fail(err)
		}
		if rerr == nil && !was.On {
			fmt.Fprintf(stdout, "not draining: new sessions are taken (it was not draining: nothing to do)\n")
			return exitOK
		}
		fmt.Fprintf(stdout, "not draining: new sessions are taken (%s removed)\n", admission.DrainPath(dir))
		return exitOK
	}
	if err := admission.SetDrain(dir, *reason); err != nil {
		return fail(err)
	}
	d, err := admission.ReadDrain(dir)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "draining: new sessions are refused with %q, running ones finish (%s); nixgate drain --off ends it\n", "nixgate: "+d.Message(), admission.DrainPath(dir))
	return exitOK
}

// settingsOf returns the settings of the configuration serve would use
// (see serveSource), without its keys: drain and usage need only
// state_dir, and a drain must work while the keys file is being mended.
func settingsOf(path string, embedded bool) (*policy.Config, error) {
	src, err := serveSource(path, embedded, nil)
	if err != nil {
		return nil, err
	}
	return src.settings()
}
