package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
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
