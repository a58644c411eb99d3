package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nixgate/nixgate/policy"
)

// TestReadmePathsWritableUnderUnit checks that docs/configuration.md's example store
// and log file can be written under systemd/nixgate.service, whose
// ProtectSystem=strict makes everything else read-only.
func TestReadmePathsWritableUnderUnit(t *testing.T) {
	readme := readFile(t, repoFile(t, "docs/configuration.md"))
	unit := readFile(t, repoFile(t, "systemd/nixgate.service"))
	var writable []string
	for _, m := range regexp.MustCompile(`(?m)^ReadWritePaths=(.*)$`).FindAllStringSubmatch(unit, -1) {
		for _, p := range strings.Fields(m[1]) {
			writable = append(writable, strings.TrimPrefix(p, "-"))
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^LogsDirectory=(.*)$`).FindAllStringSubmatch(unit, -1) {
		for _, p := range strings.Fields(m[1]) {
			writable = append(writable, filepath.Join("/var/log", p))
		}
	}
	// The full example of the configuration section.
	_, example, _ := strings.Cut(readme, "A full example with every setting:\n\n```toml\n")
	example, _, _ = strings.Cut(example, "```")
	var paths []string
	for _, m := range regexp.MustCompile(`local\?root=(/[^"\s]+)`).FindAllStringSubmatch(example, -1) {
		paths = append(paths, m[1])
	}
	for _, m := range regexp.MustCompile(`(?m)^file = "(/[^"]+)"`).FindAllStringSubmatch(example, -1) {
		paths = append(paths, m[1])
	}
	if len(paths) < 3 {
		t.Fatalf("found only %q in docs/configuration.md's example configuration", paths)
	}
	for _, p := range paths {
		ok := false
		for _, w := range writable {
			ok = ok || p == w || strings.HasPrefix(p, w+"/")
		}
		if !ok {
			t.Errorf("docs/configuration.md's %s is not writable under systemd/nixgate.service (writable: %q)", p, writable)
		}
	}
}

// TestConfigurationExampleLoads: docs/configuration.md's full example,
// every setting written out, is one nixgate's loader takes, and its
// [build_logs] and [limits] say what the comments say are the defaults.
func TestConfigurationExampleLoads(t *testing.T) {
	doc := readFile(t, repoFile(t, "docs/configuration.md"))
	_, example, ok := strings.Cut(doc, "A full example with every setting:\n\n```toml\n")
	example, _, _ = strings.Cut(example, "```")
	if !ok || example == "" {
		t.Fatal("docs/configuration.md has no full example")
	}
	cfg, err := policy.Parse("docs/configuration.md", []byte(example))
	if err != nil {
		t.Fatalf("nixgate refuses docs/configuration.md's example: %v", err)
	}
	if cfg.BuildLogs != (policy.BuildLogsConfig{MaxLogSize: policy.DefaultMaxLogSize, MaxTotal: policy.DefaultMaxLogsTotal, Retention: policy.DefaultLogRetention}) {
		t.Errorf("[build_logs] of the example: %+v; the comments say these are the defaults", cfg.BuildLogs)
	}
	if cfg.Serve.Limits != policy.DefaultLimits {
		t.Errorf("[limits] of the example: %+v; the comments say these are the defaults %+v", cfg.Serve.Limits, policy.DefaultLimits)
	}
}
