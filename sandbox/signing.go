package sandbox

import (
	"fmt"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/nixgate/nixgate/policy"
)

// Why signing matters, for the advice: what works without it, and what
// needs it.
const SigningWhy = "remote builds work without it (Nix's build hook copies their outputs back without checking signatures); " +
	"a client that substitutes from the builder needs it, and so does nix copy --from it (only a trusted user may skip the check, with --no-check-sigs)"

// SigningSetup says how to make a builder sign what it builds with a key
// of its own (Nix's secret-key-files), where the Nix that nixgate runs
// signs: the Nix daemon, as root, when Nix runs through the daemon; else
// the Nix that runs as the build account (the sandbox modes, or a local
// store of the account's own), which must read the key where it runs,
// inside the sandbox, and whose builds must not (they run in Nix's build
// sandbox, which shows them only their inputs).
type SigningSetup struct {
	// As is the account that runs Commands as they are written: "root",
	// or the build account's name.
	As string
	// Commands make the key pair, run as As: shell lines, to be run in
	// order. Root runs the build account's through runuser (sudo -u on
	// macOS), so that the account owns its key.
	Commands []string
	// SecretKey and PublicKey are the key pair's files as nixgate sees
	// them (outside any sandbox); NixSees is SecretKey as the Nix that
	// signs sees it.
	SecretKey, PublicKey, NixSees string
	// Env, when not empty, is the [nix] env line that gives the Nix
	// nixgate runs the key (NIX_CONFIG, with the key as NixSees), the
	// configuration's other variables kept; EnvWhere says where it goes,
	// and NewTable that it goes in a new [nix] table (the configuration
	// has none). Empty: Commands tell Nix (the daemon's nix.conf).
	Env, EnvWhere string
	NewTable      bool
}

// Signing returns how to make the builder of cfg, whose build account is
// a, sign with a key named name (Nix's convention: HOST-1), by commands
// to be run by the account self (who reads the advice: "root" runs
// another account's commands through runuser, or sudo on macOS).
func Signing(cfg *policy.Config, a Account, name, self string) SigningSetup {
	outside, inside, ok := accountStore(cfg, a)
	if !ok {
		// The daemon signs: root's key, in root's nix.conf.
		priv, pub := "/etc/nix/cache-priv-key.pem", "/etc/nix/cache-pub-key.pem"
		return SigningSetup{
			As: "root",
			Commands: []string{
				fmt.Sprintf("nix-store --generate-binary-cache-key %s %s %s", name, priv, pub),
				fmt.Sprintf("echo 'extra-secret-key-files = %s' >> /etc/nix/nix.conf && systemctl restart nix-daemon", priv),
			},
			SecretKey: priv, PublicKey: pub, NixSees: priv,
		}
	}
	// The account's Nix signs: a key of the account's own, in its store
	// directory (what Nix sees as /nix; nixgate hides the home and its
	// own files), mode 0600; builds see only their inputs.
	dir := filepath.Join(outside, "var", "nixgate")
	priv, pub := filepath.Join(dir, "cache-priv-key.pem"), filepath.Join(dir, "cache-pub-key.pem")
	gen := fmt.Sprintf("mkdir -p -m 700 %s && nix-store --store dummy:// --generate-binary-cache-key %s %s %s", dir, name, priv, pub)
	as := a.Name
	if self != a.Name && self == "root" {
		run := "runuser -u " + a.Name + " --"
		if runtime.GOOS == "darwin" {
			run = "sudo -u " + a.Name
		}
		gen, as = fmt.Sprintf("%s sh -c %s", run, shellQuote(gen)), "root"
	}
	env := map[string]string{}
	for k, v := range cfg.Nix.Env {
		env[k] = v
	}
	sees := filepath.Join(inside, "var", "nixgate", "cache-priv-key.pem")
	line := "extra-secret-key-files = " + sees
	if v := env["NIX_CONFIG"]; v != "" {
		line = strings.TrimSuffix(v, "\n") + "\n" + line
	}
	env["NIX_CONFIG"] = line
	st := SigningSetup{As: as, Commands: []string{gen}, SecretKey: priv, PublicKey: pub, NixSees: sees, Env: "env = " + tomlTable(env)}
	switch {
	case cfg.Where("nix.env") != "":
		st.EnvWhere = "in " + cfg.Source + ", replace [nix] env (line " + strings.TrimPrefix(cfg.Where("nix.env"), cfg.Source+":") + ") with"
	case cfg.Where("nix") != "":
		st.EnvWhere = "in " + cfg.Source + ", add to [nix] (line " + strings.TrimPrefix(cfg.Where("nix"), cfg.Source+":") + ")"
	default:
		st.EnvWhere, st.NewTable = "add to "+cfg.Source, true
	}
	return st
}

// Whoami returns the account this process runs as, as Signing's self:
// "root" for effective uid 0, whatever it is called; else its user
// name, "" when it cannot be told.
func Whoami() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	if me, err := user.Current(); err == nil {
		return me.Username
	}
	return ""
}

// accountStore returns, when the Nix that nixgate runs opens its store
// itself as the account, the directory it sees as /nix, as nixgate sees
// it (outside) and as Nix does (inside): store_dir and /nix in the
// sandbox modes; ROOT/nix of a local?root=ROOT store, or /nix of
// "local", in direct mode. ok is false when Nix goes through the daemon
// (or a store elsewhere).
func accountStore(cfg *policy.Config, a Account) (outside, inside string, ok bool) {
	if cfg.Sandbox.Mode != policy.SandboxDirect && cfg.Sandbox.Mode != "" {
		return StoreDir(cfg, a), "/nix", true
	}
	name, query, _ := strings.Cut(cfg.Nix.Store, "?")
	if strings.Contains(name, "://") {
		return "", "", false
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", "", false
	}
	root := q.Get("root")
	switch {
	case strings.HasPrefix(name, "/"):
		root = name
	case name != "local":
		return "", "", false // "", "daemon", "auto": the daemon's
	}
	dir := filepath.Join("/", root, "nix")
	return dir, dir, true
}

// OutsidePath returns where nixgate finds p, a path as the Nix it runs
// for account a sees it: in the sandbox modes, /nix/… lies in store_dir;
// elsewhere p is the same path.
func OutsidePath(cfg *policy.Config, a Account, p string) string {
	if cfg.Sandbox.Mode == policy.SandboxDirect || cfg.Sandbox.Mode == "" {
		return p
	}
	if rest, ok := strings.CutPrefix(p, "/nix/"); ok {
		return filepath.Join(StoreDir(cfg, a), rest)
	}
	return p
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// tomlTable writes m as a TOML inline table of basic strings, keys in
// order (environment variable names, which are bare keys).
func tomlTable(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " = " + tomlString(m[k])
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// OwnStore reports whether Nix, for a, uses a store of the account's own
// (a sandbox mode, or nix.store local or local?root=…), so that Nix runs
// as the account and signs, builds and writes itself; false for the
// daemon's store.
func OwnStore(cfg *policy.Config, a Account) bool {
	_, _, own := accountStore(cfg, a)
	return own
}
