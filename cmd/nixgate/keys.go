package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nixgate/nixgate/config"
	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/policy"
)

const keysExample = `Manages the keys nixgate lets in.

  nixgate keys gen [-f FILE] [-C COMMENT]
      a passwordless ed25519 key pair for a Nix client (default ~/.ssh/nixgate_ed25519)
  nixgate keys authorize --config FILE --name NAME --role ROLE [--from CIDR,…] [--expires DATE] [--exec AUTHORIZED_KEYS] KEY.pub
      add the key to the configuration's authorized_keys file (ROLE: build,
      substitute, or shell for the operator's login shell in serve mode); with
      --exec, also write the forced-command line into the build account's
      OpenSSH authorized_keys
  nixgate keys list --config FILE | --authorized-keys FILE
  nixgate keys revoke --config FILE | --authorized-keys FILE NAME|SHA256:…
  nixgate keys host --config FILE [--mode serve|exec] [--host NAME]
      the host key fingerprints, known_hosts line and machines-file publicHostKey

Example, a builder behind OpenSSH (exec mode), from nothing:
  nixgate keys gen -f ci_key                          # on the client
  nixgate keys authorize --config /etc/nixgate/nixgate.toml --name ci --role build \
      --exec ~nixremote/.ssh/authorized_keys ci_key.pub   # on the builder`

func runKeys(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		w := stdout
		if len(args) == 0 {
			w = stderr
		}
		fmt.Fprintf(w, "Usage: nixgate keys gen|authorize|list|revoke|host [options]\n\n%s\n", keysExample)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "gen":
		return keysGen(rest, stdout, stderr)
	case "authorize":
		return keysAuthorize(rest, stdout, stderr)
	case "list":
		return keysList(rest, stdout, stderr)
	case "revoke":
		return keysRevoke(rest, stdout, stderr)
	case "host":
		return keysHost(rest, stdout, stderr)
	}
	fmt.Fprintf(stderr, "nixgate keys: unknown command %q (gen, authorize, list, revoke, host)\n", sub)
	return exitUsage
}

// keysFail prints one line and returns the refusal status.
func keysFail(stderr io.Writer, sub string, err error) int {
	fmt.Fprintf(stderr, "nixgate keys %s: %s\n", sub, policy.Line(err))
	return exitRefused
}

func keysGen(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("keys gen", "[-f FILE] [-C COMMENT]", "Example:\n  nixgate keys gen -f ~/.ssh/nixgate_ed25519", stdout, stderr)
	home, _ := os.UserHomeDir()
	file := fs.String("f", filepath.Join(home, ".ssh", "nixgate_ed25519"), "the private key `FILE`; the public key goes to FILE.pub")
	host, _ := os.Hostname()
	me := "nix"
	if u, err := user.Current(); err == nil {
		me = u.Username
	}
	comment := fs.String("C", me+"@"+host, "the key's `COMMENT`")
	if ok, code := parseFlags(fs, args, stdout); !ok {
		return code
	}
	k, err := keys.Generate(*file, *comment)
	if err != nil {
		return keysFail(stderr, "gen", err)
	}
	fmt.Fprintf(stdout, "%s\n%s.pub\n%s\n", *file, *file, keys.Fingerprint(k))
	return exitOK
}

// fileFlags are the --config or --authorized-keys of list and revoke.
type fileFlags struct {
	config, authorizedKeys string
}

// defaults gives the configuration the other commands use when neither
// file is named.
func (ff *fileFlags) defaults() {
	if ff.config == "" && ff.authorizedKeys == "" {
		ff.config = defaultConfigPath
	}
}

func keysAuthorize(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("keys authorize", "--config FILE --name NAME --role ROLE [options] KEY.pub (or - for stdin)", "Example:\n  nixgate keys authorize --config /etc/nixgate/nixgate.toml --name ci --role build ci_key.pub", stdout, stderr)
	configFile := fs.String("config", defaultConfigPath, "the nixgate configuration `FILE`; the key goes into its authorized_keys file")
	name := fs.String("name", "", "the key's `NAME` (required)")
	role := fs.String("role", "", "the key's `ROLE`: build, substitute or shell (required)")
	from := fs.String("from", "", "comma-separated `NETWORKS` the key may connect from")
	expires := fs.String("expires", "", "when the key stops working: an RFC 3339 `DATE` or date-time")
	execFile := fs.String("exec", "", "also write the forced-command line for exec mode into this OpenSSH authorized_keys `FILE`")
	if ok, code := parseFlagsAndArgs(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 1 || *name == "" || *role == "" {
		fmt.Fprintln(stderr, "nixgate keys authorize: give --name, --role and one public key file (or -)")
		return exitUsage
	}
	data, err := readArg(fs.Arg(0))
	if err != nil {
		return keysFail(stderr, "authorize", err)
	}
	if strings.Contains(string(data), "PRIVATE KEY-----") {
		return keysFail(stderr, "authorize", fmt.Errorf("%s is a private key: give its public half (%s.pub, or ssh-keygen -y -f %s), and keep the private key where it is", fs.Arg(0), fs.Arg(0), fs.Arg(0)))
	}
	entry, err := keys.ParseGrantKey(strings.TrimSpace(string(data)))
	if err != nil {
		return keysFail(stderr, "authorize", err)
	}
	g := keys.Grant{Name: *name, Role: *role, Key: entry}
	if *from != "" {
		g.From = strings.Split(*from, ",")
	}
	if *expires != "" {
		t, err := parseDateArg(*expires)
		if err != nil {
			return keysFail(stderr, "authorize", err)
		}
		if !t.After(time.Now()) {
			return keysFail(stderr, "authorize", fmt.Errorf("--expires %s is past: the key would never log in; give a date to come", *expires))
		}
		g.Expires = t
	}
	cfg, err := config.Load(*configFile)
	if err == nil {
		err = heldFiles(cfg, servingAs(cfg.User)) // a key added where the build account can rewrite it
	}
	if err != nil {
		return keysFail(stderr, "authorize", err)
	}
	var self, abs string
	if *execFile != "" {
		// Before writing anything: a retry after a half-done run succeeds,
		// and a conflict leaves both files as they were.
		if self, err = os.Executable(); err != nil {
			return keysFail(stderr, "authorize", err)
		}
		abs, _ = filepath.Abs(*configFile)
		if _, err := keys.ForcedCommandPresent(*execFile, g); err != nil {
			return keysFail(stderr, "authorize", err)
		}
	}
	same := config.Granted(cfg, g)
	if same == nil && *execFile != "" {
		// Exec mode: a [[keys]] entry may leave the key to OpenSSH.
		for i, k := range cfg.Keys {
			if k.Name == g.Name && k.PublicKey == "" {
				same = &cfg.Keys[i]
			}
		}
	}
	switch {
	case same != nil && string(same.Role) != g.Role:
		return keysFail(stderr, "authorize", fmt.Errorf("%s is authorized already with role %s (%s:%d): revoke it first to change its role", g.Name, same.Role, same.Source, same.Line))
	case same != nil:
		fmt.Fprintf(stdout, "%s (%s, %s) is authorized already in %s:%d\n", g.Name, g.Role, keys.Fingerprint(entry.Key), same.Source, same.Line)
	case cfg.AuthorizedKeys == "" && *execFile != "":
		return keysFail(stderr, "authorize", fmt.Errorf("%s has no [[keys]] entry named %s with this public key, and no authorized_keys file to add it to: add the entry (name = %q, role = %q, public_key = \"%s\"), or authorized_keys = \"/etc/nixgate/authorized_keys\"", *configFile, g.Name, g.Name, g.Role, strings.TrimSpace(string(data))))
	case cfg.AuthorizedKeys == "":
		return keysFail(stderr, "authorize", fmt.Errorf("%s has no authorized_keys file: add authorized_keys = \"/etc/nixgate/authorized_keys\" to it", *configFile))
	default:
		if err := config.CheckGrant(cfg, g); err != nil {
			return keysFail(stderr, "authorize", err)
		}
		if err := keys.AddToKeysFile(cfg.AuthorizedKeys, g); err != nil {
			return keysFail(stderr, "authorize", err)
		}
		fmt.Fprintf(stdout, "authorized %s (%s, %s) in %s\n", g.Name, g.Role, keys.Fingerprint(entry.Key), cfg.AuthorizedKeys)
	}
	if *execFile != "" {
		if err := keys.AddForcedCommand(*execFile, g, self, abs); err != nil {
			return keysFail(stderr, "authorize", err)
		}
		fmt.Fprintf(stdout, "forced command for %s in %s\n", g.Name, *execFile)
	}
	return exitOK
}

func readArg(p string) ([]byte, error) {
	if p == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(p)
}

func parseDateArg(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--expires %q is not an RFC 3339 date (2027-01-31) or date-time", s)
	}
	return t, nil
}

// keyRow is one key as list shows it.
type keyRow struct {
	Name        string   `json:"name"`
	Role        string   `json:"role"`
	Fingerprint string   `json:"fingerprint"`
	From        []string `json:"from,omitempty"`
	Expires     string   `json:"expires,omitempty"`
	Expired     bool     `json:"expired,omitempty"`
	Source      string   `json:"source"`
	Restricted  *bool    `json:"restricted,omitempty"`
}

func keysList(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("keys list", "--config FILE | --authorized-keys FILE [--json]", "Examples:\n  nixgate keys list --config /etc/nixgate/nixgate.toml\n  nixgate keys list --authorized-keys ~nixremote/.ssh/authorized_keys", stdout, stderr)
	var ff fileFlags
	fs.StringVar(&ff.config, "config", "", "list the keys of this nixgate configuration `FILE` (default: "+defaultConfigPath+", as the other commands, unless --authorized-keys is given)")
	fs.StringVar(&ff.authorizedKeys, "authorized-keys", "", "list the keys of this OpenSSH authorized_keys `FILE`")
	asJSON := fs.Bool("json", false, "print JSON")
	if ok, code := parseFlags(fs, args, stdout); !ok {
		return code
	}
	ff.defaults()
	rows, err := listRows(ff)
	if err != nil {
		return keysFail(stderr, "list", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rows)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tFINGERPRINT\tFROM\tEXPIRES\tSOURCE")
	for _, r := range rows {
		exp := r.Expires
		if exp == "" {
			exp = "never"
		}
		if r.Expired {
			exp += " (EXPIRED)"
		}
		from := strings.Join(r.From, ",")
		if from == "" {
			from = "anywhere"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Role, r.Fingerprint, from, exp, r.Source)
	}
	tw.Flush()
	return exitOK
}

func listRows(ff fileFlags) ([]keyRow, error) {
	now := time.Now()
	var rows []keyRow
	switch {
	case ff.config != "" && ff.authorizedKeys == "":
		cfg, err := config.Load(ff.config)
		if err != nil {
			return nil, err
		}
		for _, k := range cfg.Keys {
			r := keyRow{Name: k.Name, Role: string(k.Role), From: k.From, Source: fmt.Sprintf("%s:%d", k.Source, k.Line), Fingerprint: k.Fingerprint}
			if r.Fingerprint == "" {
				r.Fingerprint = "(no public_key)"
			}
			if !k.Expires.IsZero() {
				r.Expires, r.Expired = k.Expires.UTC().Format(time.RFC3339), k.Expired(now)
			}
			rows = append(rows, r)
		}
	case ff.authorizedKeys != "" && ff.config == "":
		data, err := os.ReadFile(ff.authorizedKeys)
		if err != nil {
			return nil, err
		}
		for _, l := range keys.ParseAuthorizedKeys(data) {
			if l.Err != nil {
				continue // no key: sshd passes over it too
			}
			r := keyRow{Name: l.Name, Fingerprint: keys.Fingerprint(l.Key), Source: fmt.Sprintf("%s:%d", ff.authorizedKeys, l.Number), Role: "(see the nixgate configuration)"}
			if v, ok := l.Option("from"); ok {
				r.From = strings.Split(v, ",")
			}
			if v, ok := l.Option("expiry-time"); ok {
				r.Expires = v
			}
			if l.ForcedErr != nil {
				r.Role = "(not nixgate: " + policy.Line(l.ForcedErr) + ")"
			}
			restricted := l.Restricted()
			r.Restricted = &restricted
			rows = append(rows, r)
		}
	default:
		return nil, errors.New("give either --config or --authorized-keys")
	}
	return rows, nil
}

func keysRevoke(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("keys revoke", "(--config FILE | --authorized-keys FILE) NAME|SHA256:…", "Examples:\n  nixgate keys revoke --config /etc/nixgate/nixgate.toml ci\n  nixgate keys revoke --authorized-keys ~nixremote/.ssh/authorized_keys SHA256:abc…", stdout, stderr)
	var ff fileFlags
	fs.StringVar(&ff.config, "config", "", "revoke from the authorized_keys file of this nixgate configuration `FILE` (default: "+defaultConfigPath+", unless --authorized-keys is given)")
	fs.StringVar(&ff.authorizedKeys, "authorized-keys", "", "revoke from this OpenSSH authorized_keys `FILE`")
	if ok, code := parseFlagsAndArgs(fs, args, stdout); !ok {
		return code
	}
	ff.defaults()
	if fs.NArg() != 1 || (ff.config == "") == (ff.authorizedKeys == "") {
		fmt.Fprintln(stderr, "nixgate keys revoke: give --config or --authorized-keys, and one name or fingerprint")
		return exitUsage
	}
	what := fs.Arg(0)
	path := ff.authorizedKeys
	if ff.config != "" {
		// The settings alone: revoking must work while the keys file is
		// being mended.
		cfg, err := configSource{path: ff.config}.settings()
		if err != nil {
			return keysFail(stderr, "revoke", err)
		}
		for _, k := range cfg.Keys {
			if k.Name == what {
				return keysFail(stderr, "revoke", fmt.Errorf("%q is a [[keys]] entry of %s (line %d): remove it there", what, k.Source, k.Line))
			}
		}
		if cfg.AuthorizedKeys == "" {
			return keysFail(stderr, "revoke", fmt.Errorf("%s has no authorized_keys file", ff.config))
		}
		path = cfg.AuthorizedKeys
	}
	n, err := keys.Revoke(path, what)
	if err != nil {
		return keysFail(stderr, "revoke", err)
	}
	fmt.Fprintf(stdout, "revoked %s: %d line(s) removed from %s\n", what, n, path)
	return exitOK
}
