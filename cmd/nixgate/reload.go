package main

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"github.com/nixgate/nixgate/admission"
	"github.com/nixgate/nixgate/gateway"
	"github.com/nixgate/nixgate/policy"
)

// Serve mode's reloads: on SIGHUP, or when the configuration file or its
// keys file changes, the configuration is loaded again and put in force
// (a broken one is reported and the old one stays); systemd hears of it
// (Type=notify-reload).

// watchInterval is how often the watched files are looked at.
const watchInterval = 2 * time.Second

// watchConfig reports on the returned channel when the configuration
// file at source (unless it is the embedded default), the keys file of
// the configuration srv has in force, or a CA's .pub file it names
// changes. A CA's revoked file is not watched: it is read again at the
// first login after it changes (see config).
func watchConfig(srv *gateway.Server, source string) <-chan struct{} {
	return watchFiles(func() []string {
		cfg := srv.Config()
		files := []string{source, cfg.AuthorizedKeys}
		for _, ca := range cfg.CAs {
			if strings.HasPrefix(ca.PublicKey, "/") {
				files = append(files, ca.PublicKey)
			}
		}
		return files
	}, watchInterval)
}

// watchDrain reports on the returned channel when nixgate drain's file
// in state_dir changes. Sessions read that file themselves; this is for
// logging the change, and showing it in the metrics, when it happens.
func watchDrain(srv *gateway.Server) <-chan struct{} {
	return watchFiles(func() []string {
		p, _ := filepath.Abs(admission.DrainPath(srv.Config().Serve.StateDir))
		return []string{p}
	}, watchInterval)
}

// watchFiles reports on the returned channel when one of the files named
// by files changes (size, time, or inode), checking every interval.
func watchFiles(files func() []string, interval time.Duration) <-chan struct{} {
	type stamp struct {
		size  int64
		mtime time.Time
		ino   uint64
	}
	look := func() map[string]stamp {
		m := map[string]stamp{}
		for _, f := range files() {
			if f == "" || !filepath.IsAbs(f) {
				continue
			}
			fi, err := os.Stat(f)
			if err != nil {
				m[f] = stamp{}
				continue
			}
			st := stamp{size: fi.Size(), mtime: fi.ModTime()}
			if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
				st.ino = uint64(sys.Ino)
			}
			m[f] = st
		}
		return m
	}
	out := make(chan struct{}, 1)
	last := look()
	go func() {
		for range time.Tick(interval) {
			now := look()
			if !maps.Equal(now, last) {
				last = now
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}

// reload loads the configuration again and puts it in force; a broken
// one is reported and the old one stays.
func reload(srv *gateway.Server, load func() (*policy.Config, error), log *slog.Logger, stderr io.Writer) {
	daemon.SdNotify(false, daemon.SdNotifyReloading+"\nMONOTONIC_USEC="+fmt.Sprint(monotonicUsec()))
	defer daemon.SdNotify(false, daemon.SdNotifyReady)
	cfg, err := load()
	if err == nil {
		err = srv.Reload(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "nixgate serve: reload failed, keeping the old configuration: %v\n", err)
		log.Error("reload failed, keeping the old configuration", "reason", err.Error())
		return
	}
	log.Info("reloaded", "keys", len(cfg.Keys))
	announce(cfg, log, stderr)
}

// warnProot says, at start-up and on every reload, that proot mode
// cannot contain a build, and what becomes of the build keys: refused,
// or let in by the operator's acknowledgement.
func warnProot(cfg *policy.Config, log *slog.Logger, stderr io.Writer) {
	if cfg.Sandbox.Mode != policy.SandboxProot {
		return
	}
	var build []string
	for _, k := range cfg.Keys {
		if k.Role == policy.RoleBuild {
			build = append(build, k.Name)
		}
	}
	if why := cfg.Sandbox.BuildKeysRefusal(); why != "" {
		fmt.Fprintf(stderr, "nixgate serve: %s (build keys refused: %s)\n", why, strings.Join(build, ", "))
		log.Warn("proot: build keys refused", "reason", why, "keys", build)
		return
	}
	fmt.Fprintf(stderr, "nixgate serve: %s; proot_build_keys = %q lets build keys in anyway: %s\n", policy.ProotUncontained, policy.ProotBuildKeysAck, strings.Join(build, ", "))
	log.Warn("proot: build keys not contained", "reason", policy.ProotUncontained, "keys", build, "proot_build_keys", policy.ProotBuildKeysAck)
}

// warnFullTrust says, at start-up and on every reload, which keys pass
// the Nix protocols unfiltered.
func warnFullTrust(cfg *policy.Config, log *slog.Logger, stderr io.Writer) {
	for _, k := range cfg.Keys {
		if k.FullTrust {
			fmt.Fprintf(stderr, "nixgate serve: key %q has full_trust: its Nix operations are not filtered (with the build account in trusted-users it is root on this builder)\n", k.Name)
			log.Warn("full_trust key: Nix operations not filtered", "key", k.Name, "role", k.Role)
		}
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, which systemd's
// reload protocol (Type=notify-reload) wants with RELOADING=1.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Sec*1e6 + ts.Nsec/1e3
}

// announce says, at start-up and on every reload, what of cfg an
// operator must know: keys that are not filtered, what proot mode does
// to build keys, and (in the log) which CAs are trusted for what.
func announce(cfg *policy.Config, log *slog.Logger, stderr io.Writer) {
	warnFullTrust(cfg, log, stderr)
	warnProot(cfg, log, stderr)
	for _, ca := range cfg.CAs {
		var principals []string
		for _, p := range ca.Principals {
			if k := cfg.Key(p); k != nil {
				principals = append(principals, p+" ("+string(k.Role)+")")
			}
		}
		log.Info("certificate authority trusted", "ca", ca.Name, "ca_fingerprint", ca.Fingerprint, "principals", principals, "revoked", ca.Revoked)
	}
}
