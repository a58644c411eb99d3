package policy

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const goodConfig = `# a full example
user = "nixremote"

[nix]
bin_dirs = ["/nix/var/nix/profiles/default/bin", "/usr/bin"]
store = "local?root=/srv/nix"
allowed_stores = ["local?root=/srv/other"]
env = { NIX_CONFIG = "substituters =" }

[log]
file = "/var/log/nixgate.log"

[[keys]]
name = "ci"
role = "build"
public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyFakeKeyFakeKeyFakeKeyFakeKeyFakeKey ci@example"
from = ["10.0.0.0/8", "2001:db8::/32"]
expires = 2030-01-31
max_sessions = 4

[[keys]]
name = "cache"
role = "substitute"
expires = "2030-01-31T12:00:00+01:00"
`

func TestParseGood(t *testing.T) {
	cfg, err := Parse("good.toml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "nixremote" || cfg.Nix.Store != "local?root=/srv/nix" || cfg.Nix.Env["NIX_CONFIG"] != "substituters =" {
		t.Errorf("Parse = %+v", cfg)
	}
	ci := cfg.Key("ci")
	if ci == nil || ci.Role != RoleBuild || ci.MaxSessions != 4 || ci.Line != 13 {
		t.Fatalf("key ci = %+v", ci)
	}
	for addr, want := range map[string]bool{"10.1.2.3": true, "2001:db8::1": true, "192.0.2.1": false} {
		if got := ci.AllowsFrom(netip.MustParseAddr(addr)); got != want {
			t.Errorf("ci.AllowsFrom(%s) = %v; want %v", addr, got, want)
		}
	}
	if want := time.Date(2030, 1, 31, 0, 0, 0, 0, time.UTC); !ci.Expires.Equal(want) {
		t.Errorf("ci.Expires = %v; want %v", ci.Expires, want)
	}
	cache := cfg.Key("cache")
	if want := time.Date(2030, 1, 31, 11, 0, 0, 0, time.UTC); cache == nil || !cache.Expires.Equal(want) {
		t.Errorf("cache.Expires = %v; want %v", cache.Expires, want)
	}
	if got := cfg.BinDirs(); len(got) != 2 {
		t.Errorf("BinDirs = %q", got)
	}
	if cfg.Key("nobody") != nil {
		t.Error("Key(nobody) is not nil")
	}
}

func TestParseDefaults(t *testing.T) {
	cfg, err := Parse("min.toml", []byte("user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.BinDirs(); len(got) != len(DefaultBinDirs) || got[0] != DefaultBinDirs[0] {
		t.Errorf("BinDirs = %q; want the defaults", got)
	}
	k := cfg.Key("k")
	if k.Expired(time.Now().AddDate(100, 0, 0)) || !k.AllowsFrom(netipMust("203.0.113.9")) {
		t.Errorf("key without expires/from is restricted: %+v", k)
	}
}

func TestParseMinFree(t *testing.T) {
	for in, want := range map[string]uint64{
		"":                     DefaultMinFree,
		"min_free = 0":         0,
		"min_free = 1000":      1000,
		"min_free = \"512M\"":  512 << 20,
		"min_free = \"10GiB\"": 10 << 30,
		"min_free = \"2 g\"":   2 << 30,
		"min_free = \"1T\"":    1 << 40,
		"min_free = \"4096\"":  4096,
		"min_free = \"64KB\"":  64 << 10,
	} {
		cfg, err := Parse("t.toml", []byte("user = \"b\"\n[admission]\n"+in+"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n"))
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if cfg.Admission.MinFree != want {
			t.Errorf("Parse(%q).Admission.MinFree = %d; want %d", in, cfg.Admission.MinFree, want)
		}
	}
}

func TestParseBuildSlots(t *testing.T) {
	cfg, err := Parse("t.toml", []byte("user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Admission; a.MaxBuilds != 0 || a.BuildQueueTimeout != DefaultBuildQueueTimeout || a.RefuseWhenBusy {
		t.Errorf("defaults: %+v; want max_builds 0, build_queue_timeout %v, refuse_when_busy false", a, DefaultBuildQueueTimeout)
	}
	cfg, err = Parse("t.toml", []byte("user = \"b\"\n[admission]\nmax_builds = 2\nbuild_queue_timeout = \"90s\"\nrefuse_when_busy = true\n[[keys]]\nname = \"k\"\nrole = \"build\"\nmax_builds = 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Admission; a.MaxBuilds != 2 || a.BuildQueueTimeout != 90*time.Second || !a.RefuseWhenBusy {
		t.Errorf("Admission = %+v; want max_builds 2, build_queue_timeout 1m30s, refuse_when_busy", a)
	}
	if n := cfg.Key("k").MaxBuilds; n != 1 {
		t.Errorf("key k MaxBuilds = %d; want 1", n)
	}
}

func TestParseErrors(t *testing.T) {
	base := "user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n"
	tests := []struct {
		name, doc, want string
	}{
		{"syntax", "user = \n", "bad.toml:1:"},
		{"unknown top-level key", base + "colour = \"red\"\n", "bad.toml:5: unknown setting \"keys.colour\""},
		{"unknown nix key", "user = \"b\"\n[nix]\nstores = []\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:3: unknown setting \"nix.stores\""},
		{"wrong type", "user = 3\n", "bad.toml:1:"},
		{"missing user", "[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml: user: missing"},
		{"root user", "user = \"root\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:1: user: root is refused"},
		{"no keys", "user = \"b\"\n", "no [[keys]] entry"},
		{"bad role", "user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"admin\"\n", "bad.toml:4: keys[0].role: unknown role \"admin\""},
		{"missing role", "user = \"b\"\n[[keys]]\nname = \"k\"\n", "bad.toml:2: keys[0].role: missing"},
		{"duplicate name", base + "[[keys]]\nname = \"k\"\nrole = \"substitute\"\n", "bad.toml:6: keys[1].name: \"k\" is used by another key"},
		{"bad name", "user = \"b\"\n[[keys]]\nname = \"a b\"\nrole = \"build\"\n", "bad.toml:3: keys[0].name:"},
		{"bad from", base + "from = [\"10.0.0.0/33\"]\n", "bad.toml:5: keys[0].from[0]: \"10.0.0.0/33\""},
		{"bad expires", base + "expires = \"next year\"\n", "bad.toml:5: keys[0].expires: \"next year\" is not an RFC 3339"},
		{"expires wrong type", base + "expires = 5\n", "bad.toml:5: keys[0].expires: want an RFC 3339"},
		{"negative max_sessions", base + "max_sessions = -1\n", "bad.toml:5: keys[0].max_sessions"},
		{"full_trust on a substitute key", "user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"substitute\"\nfull_trust = true\n", "bad.toml:5: keys[0].full_trust: is for build keys"},
		{"client setting that reaches root", "user = \"b\"\n[nix]\nclient_settings = [\"max-silent-time\", \"extra-post-build-hook\"]\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:3: nix.client_settings[1]: \"extra-post-build-hook\" may never come from a client"},
		{"client setting that turns the sandbox off", "user = \"b\"\n[nix]\nclient_settings = [\"sandbox\"]\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:3: nix.client_settings[0]: \"sandbox\" may never come from a client: it turns the build sandbox off"},
		{"bad client setting", "user = \"b\"\n[nix]\nclient_settings = [\"Post Build Hook\"]\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:3: nix.client_settings[0]"},
		{"relative bin dir", "user = \"b\"\n[nix]\nbin_dirs = [\"bin\"]\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:3: nix.bin_dirs[0]"},
		{"reserved env", "user = \"b\"\n[nix]\nenv = { PATH = \"/x\" }\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:3: nix.env.PATH: PATH is set by nixgate"},
		{"bad min_free", "user = \"b\"\n[admission]\nmin_free = \"lots\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:3: admission.min_free: \"lots\": want bytes"},
		{"negative min_free", "user = \"b\"\n[admission]\nmin_free = -1\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:3: admission.min_free: -1 is negative"},
		{"negative max_builds", "user = \"b\"\n[admission]\nmax_builds = -1\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:3: admission.max_builds: -1 is negative"},
		{"bad build_queue_timeout", "user = \"b\"\n[admission]\nbuild_queue_timeout = \"soon\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:3: admission.build_queue_timeout: \"soon\" is not a positive duration"},
		{"max_builds on a substitute key", "user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"substitute\"\nmax_builds = 1\n", "bad.toml:5: keys[0].max_builds: is for build keys"},
		{"min_free wrong type", "user = \"b\"\n[admission]\nmin_free = 1.5\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:3: admission.min_free: want bytes"},
		{"bad env name", "user = \"b\"\n[nix.env]\n\"A-B\" = \"x\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:3: nix.env.A-B"},
		// go-toml matches names whatever their case; nixgate does not.
		{"name case top-level", "AuthoriZed_keYs = \"/etc/k\"\n" + base, "bad.toml:1: unknown setting \"AuthoriZed_keYs\": did you mean \"authorized_keys\"?"},
		{"name case before keys", "User = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:1: unknown setting \"User\""},
		{"name case table", "user = \"b\"\n[Nix]\nstore = \"x\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:2: unknown setting \"Nix\""},
		{"name case in table", "user = \"b\"\n[nix]\nStore = \"x\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:3: unknown setting \"Store\""},
		{"name case dotted", "user = \"b\"\nnix.Store = \"x\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:2: unknown setting \"Store\""},
		{"name case in array table", "user = \"b\"\n[[keys]]\nName = \"k\"\nrole = \"build\"\n", "bad.toml:3: unknown setting \"Name\""},
		{"name case array table", "user = \"b\"\n[[Keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:2: unknown setting \"Keys\""},
		{"name case inline table", "user = \"b\"\nmetrics = { LISTEN = \"127.0.0.1:1\" }\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:2: unknown setting \"LISTEN\""},
		{"name case inline array", "user = \"b\"\nkeys = [{ name = \"k\", Role = \"build\" }]\n", "bad.toml:2: unknown setting \"Role\""},
		{"name case limits", base + "[limits]\nMax_Auth_Tries = 3\n", "bad.toml:6: unknown setting \"Max_Auth_Tries\""},
		{"empty allowed store", "user = \"b\"\n[nix]\nallowed_stores = [\"\"]\n[[keys]]\nname = \"k\"\nrole = \"build\"\n", "bad.toml:3: nix.allowed_stores[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.toml", []byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse(%q) succeeded; want error containing %q", tt.doc, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "policy: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) = %q; want it to contain %q", tt.doc, err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error has several lines: %q", err)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nixgate.toml")
	if err := os.WriteFile(path, []byte(goodConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil || cfg.Source != path {
		t.Fatalf("Load = %v, %v", cfg, err)
	}
	if _, err := Load(path + ".missing"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Load(missing) = %v", err)
	}
}

func TestParseServeSettings(t *testing.T) {
	cfg, err := Parse("s.toml", []byte(`user = "b"
listen = ["127.0.0.1:2222", "[::1]:2222"]
host_keys = ["/etc/nixgate/ssh_host_ed25519_key"]
state_dir = "/var/lib/nixgate-test"
authorized_keys = "/etc/nixgate/authorized_keys"
[limits]
login_grace_time = "10s"
max_startups = 5
idle_timeout = "1m"
[metrics]
listen = "127.0.0.1:9122"
`))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Serve
	if len(s.Listen) != 2 || s.HostKeys[0] != "/etc/nixgate/ssh_host_ed25519_key" || s.StateDir != "/var/lib/nixgate-test" || s.MetricsListen != "127.0.0.1:9122" || cfg.AuthorizedKeys != "/etc/nixgate/authorized_keys" {
		t.Errorf("Serve = %+v", s)
	}
	want := DefaultLimits
	want.LoginGraceTime, want.MaxStartups, want.IdleTimeout = 10*time.Second, 5, time.Minute
	if s.Limits != want {
		t.Errorf("Limits = %+v; want %+v", s.Limits, want)
	}
	for doc, want := range map[string][2]any{
		"keepalive_interval = \"10s\"\nkeepalive_count_max = 5": {10 * time.Second, 5},
		"keepalive_interval = \"0\"":                            {time.Duration(0), DefaultLimits.KeepaliveCountMax},
		"keepalive_interval = \"0s\"":                           {time.Duration(0), DefaultLimits.KeepaliveCountMax},
		"":                                                      {30 * time.Second, 3},
	} {
		cfg, err := Parse("k.toml", []byte("user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n[limits]\n"+doc+"\n"))
		if err != nil {
			t.Errorf("%q: %v", doc, err)
			continue
		}
		if l := cfg.Serve.Limits; l.KeepaliveInterval != want[0] || l.KeepaliveCountMax != want[1] {
			t.Errorf("%q: keepalive %v × %d; want %v × %v", doc, l.KeepaliveInterval, l.KeepaliveCountMax, want[0], want[1])
		}
	}
	sock, err := Parse("m.toml", []byte("user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n[metrics]\nlisten = \"unix:/run/nixgate/metrics.sock\"\n"))
	if err != nil || sock.Serve.MetricsListen != "unix:/run/nixgate/metrics.sock" {
		t.Errorf("a unix metrics socket: %v, %q", err, sock.Serve.MetricsListen)
	}
	def, err := Parse("d.toml", []byte("user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if def.Serve.Limits != DefaultLimits || def.Serve.StateDir != DefaultStateDir || len(def.Serve.Listen) != len(DefaultListen) {
		t.Errorf("defaults = %+v", def.Serve)
	}
	for doc, want := range map[string]string{
		"user = \"b\"\nlisten = [\"nope\"]\n[[keys]]\nname = \"k\"\nrole = \"build\"\n":                    "s.toml:2: listen[0]",
		"user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n[limits]\nlogin_grace_time = \"soon\"\n":  "s.toml:6: limits.login_grace_time",
		"user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n[limits]\nmax_startups = 0\n":             "s.toml:6: limits.max_startups",
		"user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n[limits]\nkeepalive_interval = \"-1s\"\n": "s.toml:6: limits.keepalive_interval",
		"user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n[limits]\nkeepalive_count_max = 0\n":      "s.toml:6: limits.keepalive_count_max",
		"user = \"b\"\nhost_keys = [\"rel\"]\n[[keys]]\nname = \"k\"\nrole = \"build\"\n":                  "s.toml:2: host_keys[0]",
		"user = \"b\"\nauthorized_keys = \"rel\"\n":                                                        "s.toml:2: authorized_keys",
		"user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n[limits]\nmax_startup = 1\n":              "unknown setting \"limits.max_startup\": did you mean \"limits.max_startups\"?",
		"user = \"b\"\nAuthorized_Keys = \"/k\"\n":                                                         "unknown setting \"Authorized_Keys\": did you mean \"authorized_keys\"? (names are exact)",
		"user = \"b\"\nbogus = 1\n[[keys]]\nname = \"k\"\nrole = \"build\"\n":                              "s.toml:2: unknown setting \"bogus\"",
		"user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n[metrics]\nlisten = \"unix:rel.sock\"\n":  "s.toml:6: metrics.listen",
		"user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n[metrics]\nlisten = \"9122\"\n":           "s.toml:6: metrics.listen",
		"user = \"b\"\nlisten = \"0.0.0.0:2222\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n":              "s.toml:2: listen: a TOML string where a list of strings belongs: write listen = [",
		"user = \"b\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n[limits]\nmax_startups = \"ten\"\n":       "s.toml:6: limits.max_startups: a TOML string where a number belongs: write max_startups = 4",
	} {
		if _, err := Parse("s.toml", []byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v; want %q", doc, err, want)
		}
	}
}

func TestAddKeys(t *testing.T) {
	cfg, err := Parse("a.toml", []byte("user = \"b\"\nauthorized_keys = \"/k\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.AddKeys("/k", []KeySpec{{Name: "a", KeySettings: KeySettings{Role: RoleBuild}, Line: 3}, {Name: "b", KeySettings: KeySettings{Role: RoleSubstitute, Expires: "2030-01-01"}, Line: 4}}); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Keys) != 2 || cfg.Key("b").Expires.Year() != 2030 {
		t.Errorf("Keys = %+v", cfg.Keys)
	}
	err = cfg.AddKeys("/k", []KeySpec{{Name: "c", KeySettings: KeySettings{Role: RoleBuild}, Line: 1}, {Name: "a", KeySettings: KeySettings{Role: RoleBuild}, Line: 7}})
	if err == nil || !strings.Contains(err.Error(), "policy: /k:7: key 2.name: \"a\" is used by another key") {
		t.Errorf("AddKeys(duplicate) = %v", err)
	}
	if len(cfg.Keys) != 2 {
		t.Errorf("a failed AddKeys changed the keys: %+v", cfg.Keys)
	}
}

// TestClientSettings: left out, the default; written, exactly what is
// written, an empty list passing none.
func TestClientSettings(t *testing.T) {
	keys := "[[keys]]\nname = \"k\"\nrole = \"build\"\n"
	for _, tt := range []struct {
		doc  string
		want []string
	}{
		{"user = \"b\"\n" + keys, DefaultClientSettings},
		{"user = \"b\"\n[nix]\nclient_settings = []\n" + keys, []string{}},
		{"user = \"b\"\n[nix]\nclient_settings = [\"max-silent-time\"]\n" + keys, []string{"max-silent-time"}},
	} {
		cfg, err := Parse("c.toml", []byte(tt.doc))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.ClientSettings(); !slices.Equal(got, tt.want) || got == nil {
			t.Errorf("%q: ClientSettings() = %q; want %q", tt.doc, got, tt.want)
		}
		d := NewEngine(cfg).Decide(Request{Key: "k", Command: "nix-daemon --stdio"})
		if !slices.Equal(d.Ops.ClientSettings, tt.want) {
			t.Errorf("%q: the decision's op policy passes %q; want %q", tt.doc, d.Ops.ClientSettings, tt.want)
		}
	}
}

// TestParseNixEnvRefused: [nix] env was not validated, so LD_PRELOAD or
// NIX_REMOTE in it ran other code or moved Nix to another store in every
// session.
func TestParseNixEnvRefused(t *testing.T) {
	keys := "[[keys]]\nname = \"k\"\nrole = \"build\"\n"
	tests := []struct{ name, want string }{
		{"LD_PRELOAD", "dynamic loader"},
		{"LD_LIBRARY_PATH", "dynamic loader"},
		{"LD_AUDIT", "dynamic loader"},
		{"ld_preload", "dynamic loader"},
		{"DYLD_INSERT_LIBRARIES", "dynamic loader"},
		{"GCONV_PATH", "load code"},
		{"BASH_ENV", "bash"},
		{"NIX_REMOTE", "set nix.store instead"},
		{"NIX_STORE_DIR", "nix.store"},
		{"NIX_STATE_DIR", "nix.store"},
		{"NIX_CONF_DIR", "put settings in NIX_CONFIG"},
		{"NIX_USER_CONF_FILES", "put settings in NIX_CONFIG"},
		{"NIX_BIN_DIR", "nix.bin_dirs"},
		{"PATH", "set by nixgate"},
		{"HOME", "set by nixgate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, doc := range []string{
				"user = \"b\"\n[nix]\nenv = { " + tt.name + " = \"/x\" }\n" + keys,
				"user = \"b\"\n[nix.env]\nA = \"1\"\n" + tt.name + " = \"/x\"\n" + keys,
			} {
				_, err := Parse("bad.toml", []byte(doc))
				if err == nil || !strings.Contains(err.Error(), "nix.env."+tt.name+": ") || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("Parse(%q) = %v; want nix.env.%s refused with %q", doc, err, tt.name, tt.want)
				}
				if err != nil && !strings.HasPrefix(err.Error(), "policy: bad.toml:") {
					t.Errorf("error %q does not name file:line", err)
				}
			}
		})
	}
	// What the operator legitimately sets stays allowed.
	doc := "user = \"b\"\n[nix.env]\nNIX_CONFIG = \"substituters =\"\nNIX_DAEMON_SOCKET_PATH = \"/run/nix/socket\"\nNIX_PATH = \"nixpkgs=/x\"\nTMPDIR = \"/var/tmp\"\nNIX_SSL_CERT_FILE = \"/etc/ssl/c.pem\"\n" + keys
	if _, err := Parse("ok.toml", []byte(doc)); err != nil {
		t.Errorf("Parse(allowed env) = %v", err)
	}
}

// TestBinDirsInSandboxModes: in the sandbox modes the default bin_dirs
// leave out what lies in the account's own store and profile; named
// entries are the operator's choice and kept.
func TestBinDirsInSandboxModes(t *testing.T) {
	for _, mode := range []SandboxMode{SandboxUserNS, SandboxNixUserChroot, SandboxProot} {
		cfg := &Config{Sandbox: SandboxConfig{Mode: mode}}
		for _, d := range cfg.BinDirs() {
			if strings.HasPrefix(d, "/nix/") || strings.HasPrefix(d, "~/.nix-profile") {
				t.Errorf("%s: default bin_dirs keep %s, which the account can write", mode, d)
			}
		}
		if !slices.Contains(cfg.BinDirs(), "/usr/bin") {
			t.Errorf("%s: default bin_dirs %q lack /usr/bin", mode, cfg.BinDirs())
		}
		cfg.Nix.BinDirs = []string{"/nix/var/nix/profiles/default/bin"}
		if got := cfg.BinDirs(); !slices.Equal(got, cfg.Nix.BinDirs) {
			t.Errorf("%s: named bin_dirs %q became %q", mode, cfg.Nix.BinDirs, got)
		}
	}
	if got := (&Config{}).BinDirs(); !slices.Equal(got, DefaultBinDirs) {
		t.Errorf("direct mode: %q; want DefaultBinDirs", got)
	}
}

// TestWhere: a setting the file writes is found at its line, in a table
// or an array of tables; a default, or a Config not read from a file, is
// nowhere.
func TestWhere(t *testing.T) {
	doc := "user = \"b\"\n\n[sandbox]\nstore_dir = \"~/.nxi\"\n[[keys]]\nname = \"k\"\nrole = \"build\"\n"
	cfg, err := Parse("/etc/n.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ setting, want string }{
		{"user", "/etc/n.toml:1"},
		{"sandbox.store_dir", "/etc/n.toml:4"},
		{"sandbox.mode", ""},
		{"state_dir", ""},
		{"keys[0].role", "/etc/n.toml:7"},
	} {
		if got := cfg.Where(tt.setting); got != tt.want {
			t.Errorf("Where(%q) = %q; want %q", tt.setting, got, tt.want)
		}
	}
	if got := (&Config{Source: "x.toml"}).Where("user"); got != "" {
		t.Errorf("Where on a Config not read from a file = %q; want \"\"", got)
	}
}
