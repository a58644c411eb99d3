package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Role is what a key may do. The zero Role allows nothing.
type Role string

// The roles a key may have.
const (
	// RoleSubstitute may read from the store: nix-store --serve without
	// --write. It can be used as a substituter (ssh://builder) but cannot
	// add paths or build.
	RoleSubstitute Role = "substitute"
	// RoleBuild may run nix-store --serve --write and nix-daemon --stdio.
	RoleBuild Role = "build"
	// RoleShell is the operator's: an interactive login shell (with a
	// terminal) or any command through it, as the build user, in serve
	// mode, where there is no other way in.
	RoleShell Role = "shell"
)

// DefaultBinDirs are the directories searched for the Nix binaries when the
// configuration names none: the usual profile directories, then the
// system's. A leading "~/" means the build user's home directory.
var DefaultBinDirs = []string{
	"/nix/var/nix/profiles/default/bin",
	"/run/current-system/sw/bin",
	"~/.nix-profile/bin",
	"/usr/local/bin",
	"/usr/bin",
	"/bin",
}

// Config is a loaded and validated nixgate configuration. The zero Config
// has no keys and so allows nothing.
type Config struct {
	// User is the account the Nix commands run as.
	User string `toml:"user"`
	// Nix says where Nix is and which stores commands may use.
	Nix NixConfig `toml:"nix"`
	// Log says where the audit log goes.
	Log LogConfig `toml:"log"`
	// Keys are the client keys nixgate knows. A key that is not listed is
	// refused.
	Keys []Key `toml:"keys"`
	// AuthorizedKeys is a file of further keys in OpenSSH authorized_keys
	// form (see package keys); empty means none. Its keys are added to
	// Keys by config.Load.
	AuthorizedKeys string `toml:"authorized_keys"`
	// CAs are the certificate authorities whose user certificates log
	// in, each as the key of the principal it maps (serve mode). Nil
	// means certificates are refused.
	CAs []CA `toml:"-"`
	// KeySource is the program that answers which further keys may log
	// in (serve mode); its zero value has none.
	KeySource KeySourceConfig `toml:"-"`
	// Sandbox says how the Nix command runs.
	Sandbox SandboxConfig `toml:"sandbox"`
	// Serve holds the settings of serve mode.
	Serve ServeConfig `toml:"-"`
	// Admission says when the builder takes new sessions.
	Admission AdmissionConfig `toml:"-"`
	// BuildLogs says which build logs are kept.
	BuildLogs BuildLogsConfig `toml:"-"`

	// Source is the file the configuration was read from, for messages.
	Source string `toml:"-"`
	// lines maps each setting written in Source ("sandbox.store_dir")
	// to its line; nil for a Config not read from a file.
	lines map[string]int
}

// Where returns where setting, a dotted name such as
// "sandbox.store_dir", is written, as "FILE:LINE", for messages. It is
// "" when the file does not set it (it has its default) or c was not
// read from a file.
func (c *Config) Where(setting string) string {
	if l := c.lines[setting]; l > 0 && c.Source != "" {
		return fmt.Sprintf("%s:%d", c.Source, l)
	}
	return ""
}

// NixConfig is the [nix] table.
type NixConfig struct {
	// BinDirs are searched in order for nix-store and nix-daemon. Empty
	// means DefaultBinDirs.
	BinDirs []string `toml:"bin_dirs"`
	// Store, when set, is the store URL given as --store to every command
	// whose client names no store. Empty means Nix's own default store.
	Store string `toml:"store"`
	// AllowedStores are the client --store values that are accepted, in
	// addition to Store itself. Empty means a client may not choose a store.
	AllowedStores []string `toml:"allowed_stores"`
	// Env holds extra environment variables for the Nix command. Nil means
	// none beyond the clean environment nixgate builds.
	Env map[string]string `toml:"env"`
	// ClientSettings are the settings a worker-protocol client may
	// override with SetOptions; every other override is dropped and
	// logged. Nil (the setting left out) means DefaultClientSettings; an
	// empty list passes none.
	ClientSettings []string `toml:"client_settings"`
}

// LogConfig is the [log] table.
type LogConfig struct {
	// File is a path that JSON log records are appended to. Empty means the
	// system log (syslog), or nowhere when there is none.
	File string `toml:"file"`
}

// Key is one [[keys]] entry.
type Key struct {
	// Name identifies the key in logs and on the exec command line.
	Name string `toml:"name"`
	// Role is what the key may do.
	Role Role `toml:"role"`
	// PublicKey is the key in OpenSSH one-line form. Serve mode needs it;
	// exec mode may omit it, since OpenSSH has already verified the key.
	PublicKey string `toml:"public_key"`
	// Fingerprint is PublicKey's SHA256 fingerprint as OpenSSH prints it:
	// the key's identity at login. config.Load sets it when it parses
	// PublicKey; empty when there is no PublicKey, or when the Config did
	// not come from config.Load (which serve mode then refuses).
	Fingerprint string `toml:"-"`
	// From lists the networks (CIDR or single address) the key may connect
	// from. Empty means anywhere.
	From []string `toml:"from"`
	// Expires is when the key stops working: an RFC 3339 date (midnight
	// UTC starting that day) or date-time. Zero means never.
	Expires time.Time `toml:"-"`
	// MaxSessions limits the key's concurrent sessions. Zero means no limit.
	MaxSessions int `toml:"max_sessions"`
	// MaxBuilds limits how many of the key's builds run at once; more
	// wait for a slot, as for [admission] max_builds. Zero means no
	// limit of the key's own.
	MaxBuilds int `toml:"max_builds"`
	// FullTrust lets every Nix operation and SetOptions override nixgate
	// can parse through for this key, as if nixgate did not filter the
	// protocols. False (the default) filters them by role. With the build
	// account in trusted-users, a key with FullTrust is root on the
	// builder.
	FullTrust bool `toml:"full_trust"`
	// Limits cap the key's builds (build_timeout, max_silent_time,
	// max_log_size, build_cores, max_jobs). The zero BuildLimits caps
	// nothing.
	Limits BuildLimits `toml:"-"`
	// CA is the name of the [[cas]] entry whose certificates log in as
	// this key, by carrying Name as a principal: the key is a
	// [[cas.principals]] entry. Empty for a key that logs in with its
	// own public key.
	CA string `toml:"-"`

	// Source and Line say where the key is written, for messages: the
	// configuration file and its [[keys]] header, or an authorized_keys
	// file and its line.
	Source string `toml:"-"`
	Line   int    `toml:"-"`

	from []netip.Prefix
}

// ClientSettings returns the SetOptions overrides a client may send:
// c.Nix.ClientSettings, or DefaultClientSettings when that is nil.
func (c *Config) ClientSettings() []string {
	if c == nil || c.Nix.ClientSettings == nil {
		return DefaultClientSettings
	}
	return c.Nix.ClientSettings
}

// Key returns the key named name, or nil when there is none.
func (c *Config) Key(name string) *Key {
	if c == nil {
		return nil
	}
	for i := range c.Keys {
		if c.Keys[i].Name == name {
			return &c.Keys[i]
		}
	}
	return nil
}

// BinDirs returns the directories to search for Nix binaries:
// c.Nix.BinDirs, or when that is empty DefaultBinDirs — without, in the
// sandbox modes, the entries inside the account's own store (/nix there)
// and its profile (~/.nix-profile), which the account can write: the
// operator trusts those only by naming them in nix.bin_dirs.
func (c *Config) BinDirs() []string {
	if c != nil && len(c.Nix.BinDirs) > 0 {
		return c.Nix.BinDirs
	}
	if c == nil || c.Sandbox.Mode == "" || c.Sandbox.Mode == SandboxDirect {
		return DefaultBinDirs
	}
	var dirs []string
	for _, d := range DefaultBinDirs {
		if !strings.HasPrefix(d, "/nix/") && !strings.HasPrefix(d, "~/.nix-profile") {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// Expired reports whether the key has expired at now. A zero Expires never
// expires.
func (k *Key) Expired(now time.Time) bool {
	return !k.Expires.IsZero() && !now.Before(k.Expires)
}

// AllowsFrom reports whether addr is inside one of the key's From
// networks. A key without From allows every address; a key with From
// allows no invalid (unknown) address.
func (k *Key) AllowsFrom(addr netip.Addr) bool {
	if len(k.from) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, p := range k.from {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
