package check

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/nixgate/nixgate/nixproto"
	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
)

// nixVersion finds the Nix (or Lix) and its version in what nix-store
// --version printed ("nix-store (Nix) 2.34.8"): "Nix 2.34.8"; empty when
// there is none.
var nixVersion = regexp.MustCompile(`\((Nix|Lix)[^)]*\) (\S+)`)

func nixVersionIn(rs []Result) string {
	for _, r := range rs {
		if r.Name == "nix" && r.Status == OK {
			if m := nixVersion.FindStringSubmatch(r.Message); m != nil {
				return m[1] + " " + m[2]
			}
		}
	}
	return ""
}

// checkProtocols asks the builder's Nix, as nixgate runs it (nix-store
// --serve and nix-daemon --stdio, as the build user, on nixgate's
// store), which protocol versions it speaks — the first words of each
// hello — and says whether nixgate's filter knows them and what each
// role can do over them. Direct mode only: in the sandbox modes the
// sandbox check runs Nix.
func checkProtocols(cfg *policy.Config, a *account, version string) []Result {
	if cfg.Sandbox.Mode != policy.SandboxDirect || localStoreMissing(cfg.Nix.Store) {
		return nil
	}
	type spoken struct {
		program          policy.Program
		arg              string
		hello            []byte // what the client sends before Nix's version
		magic            uint64 // Nix's answer
		min, max         uint64
		protocol, scheme string
	}
	var rs []Result
	var found []string
	for _, p := range []spoken{
		{policy.NixStore, "--serve", binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, nixproto.ServeMagicClient), nixproto.ServeMaxVersion),
			nixproto.ServeMagicServer, nixproto.ServeMinVersion, nixproto.ServeMaxVersion, "serve", "ssh://"},
		{policy.NixDaemon, "--stdio", binary.LittleEndian.AppendUint64(nil, nixproto.WorkerMagicClient),
			nixproto.WorkerMagicServer, nixproto.WorkerMinVersion, nixproto.WorkerMaxVersion, "worker", "ssh-ng://"},
	} {
		args := []string{p.arg}
		if cfg.Nix.Store != "" {
			args = append(args, "--store", cfg.Nix.Store)
		}
		c, err := sandbox.Prepare(cfg, policy.Decision{Allow: true, Program: p.program, Args: args}, a.sandboxAccount())
		if err != nil {
			continue // the nix check says why
		}
		v, err := helloAsAccount(a, c.Env, c.Argv, p.hello, p.magic)
		c.Done()
		name := c.Path + " " + p.arg
		switch {
		case err != nil:
			rs = append(rs, Result{"protocol", Warn, fmt.Sprintf("%s as %s did not say which %s protocol it speaks: %v", name, a.name, p.protocol, err), ""})
		case v < p.min:
			rs = append(rs, Result{"protocol", Fail, fmt.Sprintf("%s speaks %s protocol %s, older than nixgate filters (%s–%s): %s sessions are refused",
				name, p.protocol, versionOf(v), versionOf(p.min), versionOf(p.max), p.scheme), "upgrade Nix on this builder"})
		default:
			at := versionOf(v)
			if v > p.max {
				at = fmt.Sprintf("%s, newer than nixgate knows: its sessions run at %s (nixgate lowers both hellos)", versionOf(v), versionOf(p.max))
			}
			found = append(found, fmt.Sprintf("%s protocol %s over %s", p.protocol, at, p.scheme))
		}
	}
	if len(found) > 0 {
		msg := "Nix"
		if version != "" {
			msg = version
		}
		msg += " speaks " + strings.Join(found, " and ") + ": nixgate filters it; a substitute key may query and copy from this builder (and use it as a substituter), a build key may also copy to it and build"
		rs = append(rs, Result{"protocol", OK, msg, ""})
	}
	return rs
}

// versionOf writes a protocol version as major.minor.
func versionOf(v uint64) string { return fmt.Sprintf("%d.%d", v>>8, v&0xff) }

// helloAsAccount runs argv as the account, sends hello on its stdin and
// reads the start of its answer, magic and a protocol version, which it
// returns. It ends the program then.
func helloAsAccount(a *account, env, argv []string, hello []byte, magic uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd, err := accountCommand(ctx, a, env, argv)
	if err != nil {
		return 0, err
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	if _, err := in.Write(hello); err != nil {
		return 0, err
	}
	var b [16]byte
	if _, err := io.ReadFull(out, b[:]); err != nil {
		if s := strings.TrimSpace(errb.String()); s != "" {
			return 0, fmt.Errorf("%v: %s", err, s)
		}
		return 0, err
	}
	if got := binary.LittleEndian.Uint64(b[:]); got != magic {
		return 0, fmt.Errorf("it answered %#x, not Nix's hello", got)
	}
	return binary.LittleEndian.Uint64(b[8:]), nil
}
