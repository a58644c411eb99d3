package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nixgate/nixgate/buildlog"
	"github.com/nixgate/nixgate/policy"
)

const logExample = `Shows the build log nixgate kept of a derivation built on this builder:
what the client was sent while it built, as the key that sent the build
saw it. Give the derivation, or an output path (whose derivation the
builder's Nix is asked for). When several keys built it, name one with
--key. Logs are kept in state_dir/build-logs ([build_logs]).

From a client, over SSH, a key reads the logs kept for it alone:
  ssh builder nixgate log /nix/store/…-hello-2.12.drv

Without --config it uses what nixgate serve would use: ` + defaultConfigPath + `,
or the embedded default when that does not exist.

Examples:
  nixgate log /nix/store/2y1f…-hello-2.12.drv
  nixgate log --key ci /nix/store/2y1f…-hello-2.12.drv
  nixgate log /nix/store/5k3x…-hello-2.12`

func runLog(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("log", "[--key NAME] [--config FILE | --embedded] DRV|OUTPUT", logExample, stdout, stderr)
	configFile := fs.String("config", "", "the nixgate configuration `FILE` (default: what nixgate serve would use)")
	embedded := fs.Bool("embedded", false, "use the embedded default configuration, as nixgate serve --embedded (make run) does")
	key := fs.String("key", "", "the key `NAME` whose log to show, when several keys built the derivation")
	if ok, code := parseFlagsAndArgs(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "nixgate log: give one derivation or output path")
		return exitUsage
	}
	cfg, err := settingsOf(*configFile, *embedded)
	if err != nil {
		fmt.Fprintln(stderr, "nixgate log: "+policy.Line(err))
		return exitRefused
	}
	store := buildlog.ForConfig(cfg)
	if store == nil {
		fmt.Fprintln(stderr, "nixgate log: this builder keeps no build logs ([build_logs] keep = false)")
		return exitRefused
	}
	drv := fs.Arg(0)
	if !strings.HasSuffix(drv, ".drv") {
		if drv, err = deriver(cfg, drv); err != nil {
			fmt.Fprintln(stderr, "nixgate log: "+err.Error())
			return exitRefused
		}
	}
	if !policy.ValidDrvPath(drv) {
		fmt.Fprintf(stderr, "nixgate log: %q is not a derivation's store path (/nix/store/HASH-NAME.drv)\n", drv)
		return exitUsage
	}
	if *key == "" {
		switch keys := store.Keys(drv); len(keys) {
		case 0:
			fmt.Fprintf(stderr, "nixgate log: no build log of %s is kept (in %s)\n", drv, store.Dir())
			return exitRefused
		case 1:
			*key = keys[0]
		default:
			fmt.Fprintf(stderr, "nixgate log: logs of %s are kept for the keys %s: name one with --key\n", drv, strings.Join(keys, ", "))
			return exitUsage
		}
	}
	if err := buildlog.Show(cfg, *key, drv, stdout); err != nil {
		fmt.Fprintln(stderr, "nixgate log: "+policy.Line(err))
		return exitRefused
	}
	return 0
}

// deriver asks the builder's Nix which derivation built output.
func deriver(cfg *policy.Config, output string) (string, error) {
	var nixStore string
	for _, dir := range cfg.BinDirs() {
		if p := filepath.Join(dir, "nix-store"); isExecutable(p) {
			nixStore = p
			break
		}
	}
	if nixStore == "" {
		return "", fmt.Errorf("no nix-store in nix.bin_dirs to ask for the derivation of %s: give the derivation", output)
	}
	args := []string{"--query", "--deriver", output}
	if cfg.Nix.Store != "" {
		args = append(args, "--store", cfg.Nix.Store)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, nixStore, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %v: %s (give the derivation instead)", nixStore, strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	drv := strings.TrimSpace(out.String())
	if drv == "unknown-deriver" || drv == "" {
		return "", fmt.Errorf("the builder's Nix knows no derivation of %s: give the derivation", output)
	}
	return drv, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
