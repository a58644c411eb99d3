package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/status"
)

const statusExample = `Shows what the builder is doing now: whether it takes sessions (draining,
health, with the reasons), its build slots in use by key, the builds
waiting for one in the order they will get it with how long each has
waited, and the Nix sessions running: key, for how long, from where,
bytes to and from Nix, and the derivations they build (serve mode).

serve answers on a socket in state_dir only its user may use; for exec
mode nixgate reads the lock directory state_dir/run that its sessions
share (the derivations built are not known there). Run it as the user
serve runs as (root), or as root for exec mode.

Without --config it uses what nixgate serve would use: ` + defaultConfigPath + `,
or the embedded default when that does not exist.

Examples:
  nixgate status
  nixgate status --json
  nixgate status --watch          # redraws every second; Ctrl-C ends it`

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", "[--json | --watch] [--config FILE | --embedded]", statusExample, stdout, stderr)
	configFile := fs.String("config", "", "the nixgate configuration `FILE` (default: what nixgate serve would use)")
	embedded := fs.Bool("embedded", false, "use the embedded default configuration, as nixgate serve --embedded (make run) does")
	asJSON := fs.Bool("json", false, "print JSON")
	watch := fs.Bool("watch", false, "redraw every second until interrupted")
	if ok, code := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if *asJSON && *watch {
		fmt.Fprintln(stderr, "nixgate status: give --json or --watch, not both")
		return exitUsage
	}
	cfg, err := settingsOf(*configFile, *embedded)
	if err != nil {
		fmt.Fprintln(stderr, "nixgate status: "+policy.Line(err))
		return exitRefused
	}
	show := func(w io.Writer) error {
		st, err := builderStatus(cfg)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		}
		st.Text(w)
		return nil
	}
	if !*watch {
		if err := show(stdout); err != nil {
			fmt.Fprintln(stderr, "nixgate status: "+err.Error())
			return exitRefused
		}
		return exitOK
	}
	clear := ""
	if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		clear = "\x1b[H\x1b[2J" // home, then clear the screen
	}
	for {
		var b bytes.Buffer
		b.WriteString(clear)
		if err := show(&b); err != nil {
			fmt.Fprintf(&b, "nixgate status: %v\n", err)
		}
		stdout.Write(b.Bytes())
		time.Sleep(time.Second)
	}
}

// builderStatus asks serve, on its status socket, or reads exec mode's
// lock directory when no serve answers there.
func builderStatus(cfg *policy.Config) (status.Status, error) {
	var st status.Status
	sock := statusSocket(cfg.Serve.StateDir)
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err == nil {
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := json.NewDecoder(c).Decode(&st); err != nil {
			return st, fmt.Errorf("serve's answer on %s: %v", sock, err)
		}
		return st, nil
	}
	if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ECONNREFUSED) {
		return st, fmt.Errorf("%s: %v (run it as the user serve runs as)", sock, err)
	}
	run := filepath.Join(cfg.Serve.StateDir, admission.RuntimeDirName)
	view, holders, err := admission.ReadView(run)
	if err != nil {
		return st, fmt.Errorf("no serve answers on %s, and exec mode's lock directory cannot be read: %v", sock, policy.Line(err))
	}
	st = status.Status{Mode: "exec", Time: time.Now(), Slots: view, Healthy: true}
	st.Slots.MaxBuilds = cfg.Admission.MaxBuilds
	if d, err := admission.ReadDrain(cfg.Serve.StateDir); err != nil {
		st.Draining, st.DrainReason = true, "the drain state cannot be read: "+err.Error()
	} else if d.On {
		st.Draining, st.DrainReason = true, d.Reason
	}
	if h, ok := admission.KeptHealth(run); ok && !h.OK {
		st.Healthy, st.HealthReason = false, h.Reason+" (as exec mode's sessions last saw it)"
	}
	for _, h := range holders {
		st.Sessions = append(st.Sessions, status.Session{Key: h.Key, Pid: h.Pid, Started: h.Since})
	}
	return st, nil
}
