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

	"golang.org/x/crypto/ssh"

	"github.com/nixgate/nixgate/config"
	"github.com/nixgate/nixgate/keys"
	"github.com/nixgate/nixgate/krl"
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
  nixgate keys authorize --config FILE --ca NAME --exec AUTHORIZED_KEYS
      exec mode: trust the certificates of the [[cas]] CA NAME, one
      cert-authority line per principal forcing nixgate exec --key PRINCIPAL
  nixgate keys list --config FILE | --authorized-keys FILE
  nixgate keys revoke --config FILE | --authorized-keys FILE NAME|SHA256:…
  nixgate keys revoke [--config FILE] --ca NAME --serial N | --key-id ID | --fingerprint SHA256:…
      revoke certificates of a [[cas]] CA in its revoked file
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
	caName := fs.String("ca", "", "instead of a key: write exec mode's cert-authority lines for the CA of this `NAME`, one per principal, into the --exec file")
	if ok, code := parseFlagsAndArgs(fs, args, stdout); !ok {
		return code
	}
	if *caName != "" {
		if fs.NArg() != 0 || *name != "" || *role != "" || *from != "" || *expires != "" || *execFile == "" {
			fmt.Fprintln(stderr, "nixgate keys authorize: with --ca NAME, give --exec AUTHORIZED_KEYS and no key, --name, --role, --from or --expires (the principals' settings are in the [[cas.principals]] entries)")
			return exitUsage
		}
		return authorizeCA(*configFile, *caName, *execFile, stdout, stderr)
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
	// CA names the CA whose certificates log in as the key (a
	// principal's); empty for a key of its own.
	CA string `json:"ca,omitempty"`
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
			r := keyRow{Name: k.Name, Role: string(k.Role), From: k.From, Source: fmt.Sprintf("%s:%d", k.Source, k.Line), Fingerprint: k.Fingerprint, CA: k.CA}
			switch {
			case k.CA != "":
				r.Fingerprint = "(certificates of CA " + k.CA + ")"
			case r.Fingerprint == "":
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
	fs := newFlagSet("keys revoke", "(--config FILE | --authorized-keys FILE) NAME|SHA256:…\n       nixgate keys revoke [--config FILE] --ca NAME (--serial N | --key-id ID | --fingerprint SHA256:…)",
		"Examples:\n  nixgate keys revoke --config /etc/nixgate/nixgate.toml ci\n  nixgate keys revoke --authorized-keys ~nixremote/.ssh/authorized_keys SHA256:abc…\n  nixgate keys revoke --ca ci --serial 1234\n  nixgate keys revoke --ca ci --key-id ci-repo-x-run-77\n\nWith --ca, the certificates of that [[cas]] entry are revoked in its revoked file,\nwhich nixgate serve reads again at the next login.", stdout, stderr)
	var ff fileFlags
	fs.StringVar(&ff.config, "config", "", "revoke from the authorized_keys file of this nixgate configuration `FILE` (default: "+defaultConfigPath+", unless --authorized-keys is given)")
	fs.StringVar(&ff.authorizedKeys, "authorized-keys", "", "revoke from this OpenSSH authorized_keys `FILE`")
	var cr certRevocation
	fs.StringVar(&cr.ca, "ca", "", "revoke certificates of the CA of this `NAME` (its [[cas]] entry's revoked file)")
	fs.StringVar(&cr.serial, "serial", "", "with --ca: the certificate with this serial `N` (ssh-keygen -z)")
	fs.StringVar(&cr.keyID, "key-id", "", "with --ca: every certificate with this key `ID` (ssh-keygen -I)")
	fs.StringVar(&cr.fingerprint, "fingerprint", "", "with --ca: every certificate of the key with this `SHA256:…` fingerprint")
	if ok, code := parseFlagsAndArgs(fs, args, stdout); !ok {
		return code
	}
	ff.defaults()
	if cr.ca != "" || cr.serial != "" || cr.keyID != "" || cr.fingerprint != "" {
		return cr.revoke(ff, fs.NArg(), stdout, stderr)
	}
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
			if k.Name == what && k.CA != "" {
				return keysFail(stderr, "revoke", fmt.Errorf("%q is a principal of CA %q (%s:%d): remove its [[cas.principals]] entry, or revoke certificates with --ca %s and --serial, --key-id or --fingerprint", what, k.CA, k.Source, k.Line, k.CA))
			}
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

// certRevocation is what keys revoke --ca revokes.
type certRevocation struct{ ca, serial, keyID, fingerprint string }

// revoke adds the revocation to the CA's revoked file.
func (cr certRevocation) revoke(ff fileFlags, nargs int, stdout, stderr io.Writer) int {
	kind, what, n := "", "", 0
	for _, f := range []struct{ kind, v string }{{"serial", cr.serial}, {"id", cr.keyID}, {"fingerprint", cr.fingerprint}} {
		if f.v != "" {
			kind, what = f.kind, f.v
			n++
		}
	}
	if cr.ca == "" || n != 1 || nargs != 0 || ff.authorizedKeys != "" || ff.config == "" {
		fmt.Fprintln(stderr, "nixgate keys revoke: with --ca NAME, give one of --serial, --key-id or --fingerprint, and no key name")
		return exitUsage
	}
	cfg, err := configSource{path: ff.config}.settings()
	if err != nil {
		return keysFail(stderr, "revoke", err)
	}
	ca := cfg.CA(cr.ca)
	if ca == nil {
		var names []string
		for _, c := range cfg.CAs {
			names = append(names, c.Name)
		}
		return keysFail(stderr, "revoke", fmt.Errorf("%s has no CA %q (its CAs: %s)", ff.config, cr.ca, strings.Join(names, ", ")))
	}
	if ca.Revoked == "" {
		return keysFail(stderr, "revoke", fmt.Errorf("CA %q has no revoked file: add revoked = \"/etc/nixgate/%s.revoked\" to its [[cas]] entry (%s:%d)", ca.Name, ca.Name, ca.Source, ca.Line))
	}
	if data, err := os.ReadFile(ca.Revoked); err == nil && krl.IsKRL(data) {
		return keysFail(stderr, "revoke", fmt.Errorf("%s is an OpenSSH KRL: revoke with ssh-keygen -k -u -f %s -s CA.pub SPEC (SPEC holding lines such as serial: N or id: KEY-ID)", ca.Revoked, ca.Revoked))
	}
	entry, err := keys.RevokedEntry(kind, what)
	if err != nil {
		return keysFail(stderr, "revoke", err)
	}
	added, err := keys.AddRevoked(ca.Revoked, entry)
	if err != nil {
		return keysFail(stderr, "revoke", err)
	}
	if !added {
		fmt.Fprintf(stdout, "%s of CA %s was revoked already (%s)\n", entry, ca.Name, ca.Revoked)
		return exitOK
	}
	fmt.Fprintf(stdout, "revoked %s of CA %s: added to %s; nixgate serve refuses it from the next login\n", entry, ca.Name, ca.Revoked)
	return exitOK
}

// authorizeCA writes exec mode's cert-authority line of each principal of
// the CA named name into the OpenSSH authorized_keys file execFile.
func authorizeCA(configFile, name, execFile string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(configFile)
	if err == nil {
		err = heldFiles(cfg, servingAs(cfg.User))
	}
	if err != nil {
		return keysFail(stderr, "authorize", err)
	}
	ca := cfg.CA(name)
	if ca == nil {
		return keysFail(stderr, "authorize", fmt.Errorf("%s has no CA %q", configFile, name))
	}
	key, err := ssh.ParsePublicKey(ca.Key)
	if err != nil {
		return keysFail(stderr, "authorize", fmt.Errorf("CA %q: %v", ca.Name, err))
	}
	entry := keys.Entry{Key: key, Comment: ca.Name + "-ca"}
	self, err := os.Executable()
	if err != nil {
		return keysFail(stderr, "authorize", err)
	}
	abs, _ := filepath.Abs(configFile)
	for _, p := range ca.Principals {
		added, err := keys.AddCertAuthority(execFile, entry, p, self, abs)
		if err != nil {
			return keysFail(stderr, "authorize", err)
		}
		if added {
			fmt.Fprintf(stdout, "certificates of CA %s for principal %s: cert-authority line in %s\n", ca.Name, p, execFile)
		} else {
			fmt.Fprintf(stdout, "certificates of CA %s for principal %s are trusted already in %s\n", ca.Name, p, execFile)
		}
	}
	fmt.Fprintf(stderr, "nixgate keys authorize: sshd needs ExposeAuthInfo yes, for nixgate exec to check the certificate's revocation and log its key ID (sshd_config)\n")
	return exitOK
}
