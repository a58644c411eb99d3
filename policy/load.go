package policy

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// fileConfig is the shape of the TOML file. It differs from Config where a
// value needs checking before it is trusted.
type fileConfig struct {
	User           string        `toml:"user"`
	Nix            NixConfig     `toml:"nix"`
	Log            LogConfig     `toml:"log"`
	Keys           []KeySpec     `toml:"keys"`
	AuthorizedKeys string        `toml:"authorized_keys"`
	CAs            []CASpec      `toml:"cas"`
	KeySource      fileKeySource `toml:"key_source"`
	Sandbox        SandboxConfig `toml:"sandbox"`
	Admission      fileAdmission `toml:"admission"`
	BuildLogs      fileBuildLogs `toml:"build_logs"`
	fileServe
}

// KeySpec is a key as written, in a [[keys]] entry or an authorized_keys
// line, before validation.
type KeySpec struct {
	Name      string `toml:"name"`
	PublicKey string `toml:"public_key"`
	KeySettings

	// Line is where the key is written, for messages.
	Line int `toml:"-"`
}

// KeySettings are what a key may do and how much, as written: the
// settings a [[keys]] entry and a certificate principal's
// [[cas.principals]] entry share. The zero KeySettings has no role, so a
// key or principal written with it is refused by validation.
type KeySettings struct {
	Role        Role     `toml:"role"`
	From        []string `toml:"from"`
	Expires     any      `toml:"expires"`
	MaxSessions int      `toml:"max_sessions"`
	MaxBuilds   int      `toml:"max_builds"`
	FullTrust   bool     `toml:"full_trust"`
	// Build limits, for build keys: durations ("2h"), bytes and counts.
	BuildTimeout  string `toml:"build_timeout"`
	MaxSilentTime string `toml:"max_silent_time"`
	MaxLogSize    int64  `toml:"max_log_size"`
	BuildCores    int64  `toml:"build_cores"`
	MaxJobs       int64  `toml:"max_jobs"`
}

// Load reads and validates the configuration file at path. Every error
// names the file and, where it can, the line.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errorf("%w", err)
	}
	return Parse(path, data)
}

// Parse validates the configuration in data; name is used in messages.
func Parse(name string, data []byte) (*Config, error) {
	var f fileConfig
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, decodeError(name, err)
	}
	if err := checkNameCase(name, data); err != nil {
		return nil, err
	}
	lines := indexLines(data)
	v := validator{name: name, lines: lines}
	cfg := v.config(&f)
	if v.err != nil {
		return nil, v.err
	}
	cfg.Source, cfg.lines = name, lines
	return cfg, nil
}

// wrongTypeRE matches go-toml's error for a value of the wrong type:
// the TOML type given and the Go type of the field.
var wrongTypeRE = regexp.MustCompile(`^cannot decode TOML (\w+) into struct field \S+ of type (\S+)$`)

// goTypeWords say, for a field's Go type, what a configuration must
// give, with an example of its form.
var goTypeWords = map[string]struct{ what, example string }{
	"[]string": {"a list of strings", `["…", "…"]`},
	"string":   {"a string", `"…"`},
	"int":      {"a number", "4"},
	"int64":    {"a number", "4"},
	"uint64":   {"a number", "4"},
	"bool":     {"true or false", "true"},
}

// decodeError turns a go-toml error into one with file and line.
func decodeError(name string, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		e := strict.Errors[0]
		row, _ := e.Position()
		key := strings.Join(e.Key(), ".")
		if near := suggestSetting(key); near != "" {
			return errorf("%s:%d: unknown setting %q: did you mean %q?", name, row, key, near)
		}
		return errorf("%s:%d: unknown setting %q", name, row, key)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if m := wrongTypeRE.FindStringSubmatch(msg); m != nil && len(de.Key()) > 0 {
			if words, ok := goTypeWords[m[2]]; ok {
				k := de.Key()
				return errorf("%s:%d: %s: a TOML %s where %s belongs: write %s = %s", name, row, strings.Join(k, "."), m[1], words.what, k[len(k)-1], words.example)
			}
		}
		return errorf("%s:%d: %s", name, row, msg)
	}
	return errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "toml: "))
}

var (
	keyNameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)
	envNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	settingNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	userRE        = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}\$?$`)
)

// neverClientSettings are Nix settings that give whoever sets them the
// builder (or its builds' sandbox), with the reason: client_settings may
// not name them, with or without "extra-".
var neverClientSettings = map[string]string{
	"post-build-hook":          "the daemon runs it, as root in a multi-user install",
	"pre-build-hook":           "the daemon runs it",
	"diff-hook":                "the daemon runs it",
	"run-diff-hook":            "it runs diff-hook",
	"build-hook":               "the daemon runs it",
	"build-users-group":        "an empty one makes a root daemon build as root",
	"sandbox":                  "it turns the build sandbox off",
	"sandbox-fallback":         "it lets builds run unsandboxed",
	"sandbox-paths":            "it shows builds paths of the builder",
	"allowed-impure-host-deps": "it shows builds paths of the builder",
	"builders":                 "it sends builds, and their secrets, elsewhere",
	"substituters":             "it makes the builder trust another cache",
	"trusted-substituters":     "it makes the builder trust another cache",
	"trusted-public-keys":      "it makes the builder trust other signatures",
	"require-sigs":             "it makes the builder import unsigned paths",
	"secret-key-files":         "it signs with the builder's keys",
	"trusted-users":            "it is the daemon's own",
	"allowed-users":            "it is the daemon's own",
	"plugin-files":             "it loads code into the daemon",
	"netrc-file":               "it reads the builder's credentials",
	"ssl-cert-file":            "it changes whom the builder trusts",
	"store":                    "it changes the store",
	"system-features":          "it claims features the builder lacks",
	"extra-platforms":          "it claims platforms the builder lacks",
	"repeat":                   "it runs every build again, each round with a fresh timeout (Nix 2.12 and earlier)",
	"build-repeat":             "it runs every build again, each round with a fresh timeout (Nix 2.12 and earlier)",
	"enforce-determinism":      "it goes with repeat (Nix 2.12 and earlier)",
}

// reservedEnv are variables nixgate sets itself; the configuration may not
// replace them.
var reservedEnv = map[string]bool{"PATH": true, "HOME": true, "USER": true, "LOGNAME": true}

// validator collects the first validation error, with its line.
type validator struct {
	name  string
	lines map[string]int
	err   error
}

func (v *validator) fail(path string, format string, args ...any) {
	if v.err != nil {
		return
	}
	line := v.line(path)
	msg := fmt.Sprintf(format, args...)
	if line > 0 {
		v.err = errorf("%s:%d: %s: %s", v.name, line, path, msg)
	} else {
		v.err = errorf("%s: %s: %s", v.name, path, msg)
	}
}

// line finds the line of path, or of its closest enclosing table.
func (v *validator) line(path string) int {
	for p := path; p != ""; {
		if l, ok := v.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

func (v *validator) config(f *fileConfig) *Config {
	cfg := &Config{User: f.User, Nix: f.Nix, Log: f.Log, AuthorizedKeys: f.AuthorizedKeys}
	cfg.Serve = v.serve(&f.fileServe)
	cfg.Sandbox = v.sandbox(f.Sandbox)
	cfg.Admission = v.admission(f.Admission)
	cfg.KeySource = v.keySource(f.KeySource)
	cfg.BuildLogs = v.buildLogs(f.BuildLogs)
	if f.AuthorizedKeys != "" && !strings.HasPrefix(f.AuthorizedKeys, "/") {
		v.fail("authorized_keys", "%q must be an absolute path", f.AuthorizedKeys)
	}
	switch {
	case f.User == "":
		v.fail("user", "missing: name the account the Nix commands run as")
	case !userRE.MatchString(f.User):
		v.fail("user", "%q is not a valid user name", f.User)
	case f.User == "root":
		v.fail("user", "root is refused: run the Nix commands as an unprivileged build account")
	}
	for i, d := range f.Nix.BinDirs {
		if !strings.HasPrefix(d, "/") && !strings.HasPrefix(d, "~/") {
			v.fail(fmt.Sprintf("nix.bin_dirs[%d]", i), "%q must be an absolute path or start with ~/", d)
		}
	}
	if strings.TrimSpace(f.Nix.Store) != f.Nix.Store {
		v.fail("nix.store", "%q has surrounding white space", f.Nix.Store)
	}
	for i, s := range f.Nix.AllowedStores {
		if s == "" || strings.TrimSpace(s) != s {
			v.fail(fmt.Sprintf("nix.allowed_stores[%d]", i), "%q is empty or has surrounding white space", s)
		}
	}
	for name := range f.Nix.Env {
		path := "nix.env." + name
		switch {
		case !envNameRE.MatchString(name):
			v.fail(path, "%q is not a valid variable name", name)
		case envRefusal(name) != "":
			v.fail(path, "%s", envRefusal(name))
		}
	}
	if _, set := v.lines["nix.client_settings"]; !set && cfg.Nix.ClientSettings == nil {
		cfg.Nix.ClientSettings = DefaultClientSettings
	}
	if cfg.Nix.ClientSettings == nil {
		cfg.Nix.ClientSettings = []string{}
	}
	for i, name := range cfg.Nix.ClientSettings {
		at := fmt.Sprintf("nix.client_settings[%d]", i)
		if !settingNameRE.MatchString(name) {
			v.fail(at, "%q is not a Nix setting name", name)
		} else if why, ok := neverClientSettings[strings.TrimPrefix(name, "extra-")]; ok {
			v.fail(at, "%q may never come from a client: %s (a key that needs it needs full_trust)", name, why)
		}
	}
	if len(f.Keys) == 0 && f.AuthorizedKeys == "" && len(f.CAs) == 0 && len(f.KeySource.Command) == 0 {
		v.fail("keys", "no [[keys]] entry, no authorized_keys file, no [[cas]] and no [key_source]: add a key, or nothing can connect")
	}
	seen := map[string]bool{}
	for i, fk := range f.Keys {
		at := fmt.Sprintf("keys[%d]", i)
		fk.Line = v.line(at)
		cfg.Keys = append(cfg.Keys, v.key(at, fk, seen))
	}
	seenCAs := map[string]bool{}
	for i, fc := range f.CAs {
		cfg.CAs = append(cfg.CAs, v.ca(fmt.Sprintf("cas[%d]", i), fc, cfg, seen, seenCAs))
	}
	return cfg
}

// AddKeys validates keys read from source (an authorized_keys file) and
// adds them to c. Names must not clash with keys already in c. Errors name
// source and the key's line.
func (c *Config) AddKeys(source string, specs []KeySpec) error {
	seen := map[string]bool{}
	for _, k := range c.Keys {
		seen[k.Name] = true
	}
	v := validator{name: source, lines: map[string]int{}}
	var added []Key
	for i, spec := range specs {
		at := fmt.Sprintf("key %d", i+1)
		v.lines[at] = spec.Line
		added = append(added, v.key(at, spec, seen))
	}
	if v.err != nil {
		return v.err
	}
	c.Keys = append(c.Keys, added...)
	return nil
}

func (v *validator) key(at string, fk KeySpec, seen map[string]bool) Key {
	k := Key{Name: fk.Name, Role: fk.Role, PublicKey: strings.TrimSpace(fk.PublicKey), From: fk.From, MaxSessions: fk.MaxSessions, MaxBuilds: fk.MaxBuilds, FullTrust: fk.FullTrust, Source: v.name, Line: fk.Line}
	switch {
	case fk.Name == "":
		v.fail(at+".name", "missing")
	case !keyNameRE.MatchString(fk.Name):
		v.fail(at+".name", "%q: use letters, digits, '.', '_', '-' and '@' (at most 64)", fk.Name)
	case seen[fk.Name]:
		v.fail(at+".name", "%q is used by another key", fk.Name)
	}
	seen[fk.Name] = true
	switch fk.Role {
	case RoleSubstitute, RoleBuild, RoleShell:
	case "":
		v.fail(at+".role", "missing: want %q, %q or %q", RoleSubstitute, RoleBuild, RoleShell)
	default:
		v.fail(at+".role", "unknown role %q: want %q, %q or %q", fk.Role, RoleSubstitute, RoleBuild, RoleShell)
	}
	for j, s := range fk.From {
		p, err := parseNetwork(s)
		if err != nil {
			v.fail(fmt.Sprintf("%s.from[%d]", at, j), "%q is not an address or CIDR network", s)
			continue
		}
		k.from = append(k.from, p)
	}
	if fk.Expires != nil {
		t, err := parseExpiry(fk.Expires)
		if err != nil {
			v.fail(at+".expires", "%v", err)
		}
		k.Expires = t
	}
	if fk.FullTrust && fk.Role != RoleBuild {
		v.fail(at+".full_trust", "is for build keys: a %s key's operations are always filtered", fk.Role)
	}
	k.Limits = v.limits(at, fk)
	if fk.MaxSessions < 0 {
		v.fail(at+".max_sessions", "%d is negative (0 means no limit)", fk.MaxSessions)
	}
	if fk.MaxBuilds < 0 {
		v.fail(at+".max_builds", "%d is negative (0 means no limit)", fk.MaxBuilds)
	}
	if fk.MaxBuilds > 0 && fk.Role != RoleBuild {
		v.fail(at+".max_builds", "is for build keys")
	}
	return k
}

func parseNetwork(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parseExpiry accepts a TOML date or date-time, or a string holding an
// RFC 3339 date or date-time. Dates and local date-times are taken as UTC.
func parseExpiry(v any) (time.Time, error) {
	switch t := v.(type) {
	case time.Time:
		return t, nil
	case toml.LocalDate:
		return time.Date(t.Year, time.Month(t.Month), t.Day, 0, 0, 0, 0, time.UTC), nil
	case toml.LocalDateTime:
		return t.AsTime(time.UTC), nil
	case string:
		if d, err := time.Parse(time.DateOnly, t); err == nil {
			return d, nil
		}
		if d, err := time.Parse(time.RFC3339, t); err == nil {
			return d, nil
		}
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 date (2027-01-31) or date-time (2027-01-31T12:00:00Z)", t)
	}
	return time.Time{}, fmt.Errorf("want an RFC 3339 date or date-time, not %T", v)
}
