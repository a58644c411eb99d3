package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nixgate/nixgate/config"
	"github.com/nixgate/nixgate/policy"
)

// nixpkgsLib finds nixpkgs' lib, for evaluating the NixOS module:
// NIXGATE_NIXPKGS_LIB, or shared/nixpkgs-lib beside the checkout or
// beside any directory above it (../shared/nixpkgs-lib on the machines
// this is built on). Under CI a missing lib is a failure: the module's
// evaluation is part of what make test proves.
func nixpkgsLib(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("NIXGATE_NIXPKGS_LIB")}
	if dir, err := filepath.Abs(".."); err == nil {
		for i := 0; i < 8; i++ {
			candidates = append(candidates, filepath.Join(dir, "..", "shared", "nixpkgs-lib"))
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	for _, dir := range candidates {
		if dir == "" {
			continue
		}
		if abs, err := filepath.Abs(dir); err == nil {
			if _, err := os.Stat(filepath.Join(abs, "lib", "default.nix")); err == nil {
				return filepath.Join(abs, "lib")
			}
		}
	}
	const why = "no nixpkgs lib: set NIXGATE_NIXPKGS_LIB to the directory that holds nixpkgs' lib/, or put it in ../shared/nixpkgs-lib"
	if os.Getenv("CI") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
	return ""
}

// nixosEval is what nix/tests/nixos.nix makes of a configuration.
type nixosEval struct {
	Assertions []string `json:"assertions"`
	Service    *struct {
		ServiceConfig map[string]any `json:"serviceConfig"`
		WantedBy      []string       `json:"wantedBy"`
		Requires      []string       `json:"requires"`
	} `json:"service"`
	Socket *struct {
		WantedBy      []string       `json:"wantedBy"`
		ListenStreams []string       `json:"listenStreams"`
		SocketConfig  map[string]any `json:"socketConfig"`
	} `json:"socket"`
	Firewall   []int          `json:"firewall"`
	Users      map[string]any `json:"users"`
	Settings   map[string]any `json:"settings"`
	ConfigFile *string        `json:"configFile"`
}

// moduleEval runs nix-instantiate on the module evaluations of nix/tests
// with one Nix: the host's, or a chroot's, with nix/ and nixpkgs' lib
// copied into it.
type moduleEval struct {
	n           nixUnderTest
	nixDir, lib string // as that Nix sees them
}

func newModuleEval(t *testing.T, n nixUnderTest, lib string) *moduleEval {
	t.Helper()
	nixDir, err := filepath.Abs(filepath.Join("..", "nix"))
	if err != nil {
		t.Fatal(err)
	}
	if n.chroot == "" {
		return &moduleEval{n: n, nixDir: nixDir, lib: lib}
	}
	dir, err := os.MkdirTemp(filepath.Join(n.chroot, "tmp"), "nixgate-modules-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	mustRun(t, nil, "cp", "-r", nixDir, filepath.Join(dir, "nix"))
	mustRun(t, nil, "cp", "-r", lib, filepath.Join(dir, "lib"))
	inside := "/" + strings.TrimPrefix(strings.TrimPrefix(dir, n.chroot), "/")
	return &moduleEval{n: n, nixDir: inside + "/nix", lib: inside + "/lib"}
}

// eval evaluates nix/tests/file with the module configuration expr.
func (m *moduleEval) eval(t *testing.T, file, expr string) result {
	t.Helper()
	argv := []string{"nix-instantiate", "--eval", "--read-write-mode", "--strict", "--json",
		m.nixDir + "/tests/" + file, "--arg", "lib", "import " + m.lib, "--arg", "config", expr}
	if m.n.chroot != "" {
		return run(t, nil, nil, chrootArgv(m.n.chroot, argv...)...)
	}
	return run(t, nil, nil, argv...)
}

// evalNixOS evaluates the module with the NixOS configuration expr;
// the result, or the evaluation's error.
func evalNixOS(t *testing.T, m *moduleEval, expr string) (nixosEval, result) {
	t.Helper()
	r := m.eval(t, "nixos.nix", expr)
	var e nixosEval
	if r.code == 0 {
		if err := json.Unmarshal([]byte(r.stdout), &e); err != nil {
			t.Fatalf("the evaluation's JSON: %v\n%s", err, r.stdout)
		}
	}
	return e, r
}

// loadGenerated loads the configuration the module generated with
// nixgate's own loader.
func loadGenerated(t *testing.T, e nixosEval) *policy.Config {
	t.Helper()
	if e.ConfigFile == nil {
		t.Fatal("the module generated no /etc/nixgate/nixgate.toml")
	}
	cfg, err := config.Parse("/etc/nixgate/nixgate.toml", []byte(*e.ConfigFile))
	if err != nil {
		t.Fatalf("nixgate refuses what the module generated: %v\n%s", err, *e.ConfigFile)
	}
	return cfg
}

// TestNixOSModule evaluates nix/module.nix with nixpkgs' lib and the
// NixOS options it sets declared as NixOS declares them, for a set of
// configurations, and checks the unit, the firewall, the account, the
// daemon's trust and the generated configuration, which nixgate's own
// loader takes.
func TestNixOSModule(t *testing.T) {
	requireTools(t)
	lib := nixpkgsLib(t)
	for _, n := range nixVersions(t) {
		t.Run("Nix"+n.name, func(t *testing.T) { testNixOSModule(t, newModuleEval(t, n, lib)) })
	}
}

func testNixOSModule(t *testing.T, lib *moduleEval) {
	const key = `"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBDXbJ9NkJ+yCDkbWPPEx+8AmJpJYqTOcaw5PbXdu4cJ ci@example"`

	t.Run("defaults", func(t *testing.T) {
		e, r := evalNixOS(t, lib, `{ services.nixgate.enable = true; }`)
		if r.code != 0 || len(e.Assertions) != 1 || !strings.Contains(e.Assertions[0], "services.nixgate: no key may log in") {
			t.Fatalf("with no key: %s %v; want the module's assertion", r, e.Assertions)
		}
		e, r = evalNixOS(t, lib, `{ services.nixgate = { enable = true; keys.ci = { role = "build"; publicKey = `+key+`; }; }; }`)
		if r.code != 0 || len(e.Assertions) != 0 {
			t.Fatalf("evaluation: %s %v", r, e.Assertions)
		}
		if e.Service == nil || !strings.HasSuffix(e.Service.ServiceConfig["ExecStart"].(string), "/bin/nixgate serve --config /etc/nixgate/nixgate.toml") {
			t.Errorf("the unit: %+v", e.Service)
		}
		if rw := e.Service.ServiceConfig["ReadWritePaths"]; !strings.Contains(strings.Join(anyStrings(rw), " "), "-/var/lib/nixgate-store") {
			t.Errorf("the unit's ReadWritePaths %v lack the store of a builder of its own", rw)
		}
		if len(e.Firewall) != 0 {
			t.Errorf("firewall %v without openFirewall", e.Firewall)
		}
		if _, ok := e.Users["nixremote"]; !ok {
			t.Errorf("users %v: no nixremote", e.Users)
		}
		if got := anyStrings(e.Settings["extra-trusted-users"]); strings.Join(got, ",") != "nixremote" {
			t.Errorf("nix.settings.extra-trusted-users = %v; want the build account (the daemon's store is used)", got)
		}
		if got := anyStrings(e.Settings["trusted-users"]); strings.Join(got, ",") != "root" {
			t.Errorf("nix.settings.trusted-users = %v; want NixOS's own, untouched", got)
		}
		cfg := loadGenerated(t, e)
		if cfg.User != "nixremote" || len(cfg.Serve.Listen) != 2 {
			t.Errorf("the generated configuration: user %q, listen %v", cfg.User, cfg.Serve.Listen)
		}
	})

	t.Run("every option", func(t *testing.T) {
		e, r := evalNixOS(t, lib, `{
  services.nixgate = {
    enable = true;
    user = "builder";
    listen = [ "0.0.0.0:2222" "[::]:2222" "0.0.0.0:2223" ];
    openFirewall = true;
    keys.ci = { role = "build"; publicKey = `+key+`; from = [ "10.0.0.0/8" ]; expires = "2030-01-31";
      maxSessions = 4; maxBuilds = 2; fullTrust = false; buildTimeout = "2h"; maxSilentTime = "30m";
      maxLogSize = 1048576; buildCores = 4; maxJobs = 2; };
    clientSettings = [ "max-silent-time" "timeout" ];
    limits = { max_startups = 32; drain_timeout = "2m"; };
    admission.max_builds = 3;
    metricsListen = "unix:/run/nixgate/metrics.sock";
    logFile = "/var/log/nixgate/audit.log";
    settings.limits.per_source_rate = 60;
  };
}`)
		if r.code != 0 {
			t.Fatalf("evaluation: %s", r)
		}
		if fmt.Sprint(e.Firewall) != "[2222 2223]" {
			t.Errorf("firewall %v; want each port once", e.Firewall)
		}
		cfg := loadGenerated(t, e)
		k := cfg.Key("ci")
		if k == nil {
			t.Fatalf("no key ci in:\n%s", *e.ConfigFile)
		}
		if k.MaxSessions != 4 || k.MaxBuilds != 2 || k.Limits.BuildTimeout != 2*time.Hour || k.Limits.MaxSilentTime != 30*time.Minute ||
			k.Limits.MaxLogSize != 1<<20 || k.Limits.BuildCores != 4 || k.Limits.MaxJobs != 2 || len(k.From) != 1 || k.Expires.Year() != 2030 {
			t.Errorf("key ci as nixgate loads it: %+v", k)
		}
		if cfg.Serve.Limits.MaxStartups != 32 || cfg.Serve.Limits.DrainTimeout != 2*time.Minute || cfg.Serve.Limits.PerSourceRate != 60 ||
			cfg.Serve.MetricsListen != "unix:/run/nixgate/metrics.sock" || cfg.User != "builder" {
			t.Errorf("settings as nixgate loads them: %+v", cfg.Serve)
		}
		if strings.Join(cfg.Nix.ClientSettings, ",") != "max-silent-time,timeout" || cfg.Log.File != "/var/log/nixgate/audit.log" || cfg.Admission.MaxBuilds != 3 {
			t.Errorf("client_settings %v, log file %q, admission %+v", cfg.Nix.ClientSettings, cfg.Log.File, cfg.Admission)
		}
	})

	t.Run("socket activation", func(t *testing.T) {
		e, r := evalNixOS(t, lib, `{ services.nixgate = { enable = true; keys.ci = { role = "build"; publicKey = `+key+`; }; }; }`)
		if r.code != 0 {
			t.Fatalf("evaluation: %s", r)
		}
		if e.Socket != nil || !slices.Contains(anyStrings(e.Service.ServiceConfig["CapabilityBoundingSet"]), "CAP_NET_BIND_SERVICE") {
			t.Errorf("without socketActivation: socket %+v, capabilities %v; want no socket and nixgate binding its ports", e.Socket, e.Service.ServiceConfig["CapabilityBoundingSet"])
		}
		e, r = evalNixOS(t, lib, `{ services.nixgate = { enable = true; socketActivation = true; listen = [ "0.0.0.0:22" "[::]:22" ];
  keys.ci = { role = "build"; publicKey = `+key+`; }; }; }`)
		if r.code != 0 {
			t.Fatalf("evaluation: %s", r)
		}
		if e.Socket == nil {
			t.Fatal("socketActivation = true made no nixgate.socket")
		}
		if got := strings.Join(e.Socket.ListenStreams, " "); got != "0.0.0.0:22 [::]:22" {
			t.Errorf("the socket listens on %q; want the listen addresses", got)
		}
		// nixgate binds [::] IPv6-only beside 0.0.0.0; systemd must too,
		// or the second bind fails.
		if e.Socket.SocketConfig["BindIPv6Only"] != "ipv6-only" || !slices.Contains(e.Socket.WantedBy, "sockets.target") {
			t.Errorf("the socket: %+v", e.Socket)
		}
		if slices.Contains(e.Service.WantedBy, "multi-user.target") || !slices.Contains(e.Service.Requires, "nixgate.socket") {
			t.Errorf("the service: wantedBy %v, requires %v; want it started by its socket", e.Service.WantedBy, e.Service.Requires)
		}
		if caps := anyStrings(e.Service.ServiceConfig["CapabilityBoundingSet"]); slices.Contains(caps, "CAP_NET_BIND_SERVICE") || !slices.Contains(caps, "CAP_SETUID") {
			t.Errorf("capabilities %v: systemd binds the ports, so nixgate needs no CAP_NET_BIND_SERVICE", caps)
		}
		loadGenerated(t, e)
	})

	t.Run("a store of its own", func(t *testing.T) {
		e, r := evalNixOS(t, lib, `{ services.nixgate = { enable = true; keys.ci = { role = "build"; publicKey = `+key+`; }; settings.nix.store = "local?root=/var/lib/nixgate-store"; }; }`)
		if r.code != 0 {
			t.Fatalf("evaluation: %s", r)
		}
		if _, ok := e.Settings["extra-trusted-users"]; ok {
			t.Errorf("nix.settings %v: the build account trusted by a daemon whose store nixgate does not use", e.Settings)
		}
		if cfg := loadGenerated(t, e); cfg.Nix.Store != "local?root=/var/lib/nixgate-store" {
			t.Errorf("nix.store %q", cfg.Nix.Store)
		}
	})

	t.Run("bad values", func(t *testing.T) {
		for _, tc := range []struct{ expr, says string }{
			{`{ services.nixgate = { enable = true; keys.x = { role = "admin"; publicKey = "k"; }; }; }`, `"substitute", "build", "shell"`},
			{`{ services.nixgate = { enable = true; keys.x = { role = "build"; publicKey = "k"; maxJobs = 0; }; }; }`, "positive integer"},
			{`{ services.nixgate = { enable = true; openFirewall = "yes"; }; }`, "not of type `boolean'"},
		} {
			if _, r := evalNixOS(t, lib, tc.expr); r.code == 0 || !strings.Contains(r.stderr, tc.says) {
				t.Errorf("%s: %s; want the evaluation to fail saying %q", tc.expr, r, tc.says)
			}
		}
	})
}

func anyStrings(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// TestDarwinModule evaluates nix/darwin.nix as nix-darwin would: the
// launch daemon as launchd/org.nixgate.serve.plist has it, the build
// account nix-darwin creates (a known user with a uid), the daemon's
// trust, and a configuration nixgate's loader takes; a sandbox mode
// macOS cannot run fails the evaluation's assertions.
func TestDarwinModule(t *testing.T) {
	requireTools(t)
	lib := nixpkgsLib(t)
	for _, n := range nixVersions(t) {
		t.Run("Nix"+n.name, func(t *testing.T) { testDarwinModule(t, newModuleEval(t, n, lib)) })
	}
}

func testDarwinModule(t *testing.T, m *moduleEval) {
	eval := func(expr string) (map[string]any, result) {
		t.Helper()
		r := m.eval(t, "darwin.nix", expr)
		var out map[string]any
		if r.code == 0 {
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
				t.Fatalf("the evaluation's JSON: %v\n%s", err, r.stdout)
			}
		}
		return out, r
	}
	out, r := eval(`{ services.nixgate = { enable = true; keys.ci = { role = "build"; publicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBDXbJ9NkJ+yCDkbWPPEx+8AmJpJYqTOcaw5PbXdu4cJ ci@example"; buildTimeout = "1h"; }; }; }`)
	if r.code != 0 || len(anyStrings(out["assertions"])) != 0 {
		t.Fatalf("evaluation: %s %v", r, out["assertions"])
	}
	daemon, _ := out["daemon"].(map[string]any)
	args := anyStrings(daemon["ProgramArguments"])
	if daemon["Label"] != "org.nixgate.serve" || len(args) != 4 || !strings.HasSuffix(args[0], "/bin/nixgate") || strings.Join(args[1:], " ") != "serve --config /etc/nixgate/nixgate.toml" ||
		daemon["RunAtLoad"] != true || daemon["ExitTimeOut"] != float64(360) {
		t.Errorf("the launch daemon: %v", daemon)
	}
	if strings.Join(anyStrings(out["knownUsers"]), ",") != "nixremote" {
		t.Errorf("known users %v: nix-darwin creates only those", out["knownUsers"])
	}
	settings, _ := out["settings"].(map[string]any)
	if strings.Join(anyStrings(settings["extra-trusted-users"]), ",") != "nixremote" {
		t.Errorf("nix.settings %v", settings)
	}
	text, _ := out["configFile"].(string)
	cfg, err := config.Parse("/etc/nixgate/nixgate.toml", []byte(text))
	if err != nil {
		t.Fatalf("nixgate refuses what the module generated: %v\n%s", err, text)
	}
	if k := cfg.Key("ci"); k == nil || k.Limits.BuildTimeout != time.Hour {
		t.Errorf("key ci as nixgate loads it: %+v", k)
	}

	out, r = eval(`{ services.nixgate = { enable = true; keys.ci = { role = "build"; publicKey = "k"; }; settings.sandbox.mode = "userns"; }; }`)
	if r.code != 0 || !strings.Contains(strings.Join(anyStrings(out["assertions"]), "\n"), `only "direct" works on macOS`) {
		t.Errorf("sandbox.mode userns on macOS: %s %v; want the module's assertion", r, out["assertions"])
	}
}

// TestReadmeModules evaluates docs/nixos.md's NixOS and nix-darwin examples
// as they are written there, and loads the configuration each makes with
// nixgate's loader; the NixOS unit's ExecStart points at it.
func TestReadmeModules(t *testing.T) {
	requireTools(t)
	lib := nixpkgsLib(t)
	const doc = "docs/nixos.md"
	lines, first, err := readmeSection(readFile(t, filepath.Join("..", doc)), "## NixOS and nix-darwin")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(lines, first)
	if len(blocks) != 2 {
		t.Fatalf("the section has %d code blocks; want the NixOS and the nix-darwin example", len(blocks))
	}
	m := newModuleEval(t, hostNix, lib)
	for i, file := range []string{"nixos.nix", "darwin.nix"} {
		r := m.eval(t, file, blocks[i].text)
		if r.code != 0 {
			t.Fatalf("%s:%d, evaluated as %s: %s", doc, blocks[i].line, file, r)
		}
		var out struct {
			Assertions []string        `json:"assertions"`
			ConfigFile string          `json:"configFile"`
			Service    *map[string]any `json:"service"`
			Daemon     *struct {
				ProgramArguments []string `json:"ProgramArguments"`
			} `json:"daemon"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatal(err)
		}
		if len(out.Assertions) != 0 {
			t.Errorf("%s:%d: the module's assertions fail: %v", doc, blocks[i].line, out.Assertions)
		}
		cfg, err := config.Parse("/etc/nixgate/nixgate.toml", []byte(out.ConfigFile))
		if err != nil {
			t.Fatalf("%s:%d: nixgate refuses the configuration the example makes: %v\n%s", doc, blocks[i].line, err, out.ConfigFile)
		}
		if cfg.Key("ci") == nil {
			t.Errorf("%s:%d: no key ci in the configuration it makes", doc, blocks[i].line)
		}
		if file == "nixos.nix" {
			sc, _ := (*out.Service)["serviceConfig"].(map[string]any)
			if exec, _ := sc["ExecStart"].(string); !strings.HasSuffix(exec, "serve --config /etc/nixgate/nixgate.toml") {
				t.Errorf("the unit's ExecStart %q does not point at the configuration", exec)
			}
		} else if out.Daemon == nil || !strings.HasSuffix(strings.Join(out.Daemon.ProgramArguments, " "), "serve --config /etc/nixgate/nixgate.toml") {
			t.Errorf("the launch daemon %+v does not run serve with the configuration", out.Daemon)
		}
	}
}
