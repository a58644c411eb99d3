package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// TestSystemdUnitsVerify runs systemd-analyze verify on the units, in a
// root directory laid out as the units' install comments say, and checks
// the hardening score the README states.
func TestSystemdUnitsVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is missing")
		}
		t.Skip("systemd-analyze is missing (package systemd)")
	}
	root := t.TempDir()
	copyFile(t, nixgateBin, filepath.Join(root, "usr/local/bin/nixgate"), 0o755)
	copyFile(t, "/bin/kill", filepath.Join(root, "bin/kill"), 0o755)
	if err := os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, nil, "cp", "-a", "/usr/lib/systemd/system", filepath.Join(root, "usr/lib/systemd/"))
	for _, u := range []string{"nixgate.service", "nixgate.socket"} {
		copyFile(t, repoFile(t, "systemd/"+u), filepath.Join(root, "etc/systemd/system", u), 0o644)
	}
	r := run(t, nil, nil, "systemd-analyze", "verify", "--root="+root, "nixgate.service", "nixgate.socket")
	if r.code != 0 || r.stderr != "" {
		t.Errorf("systemd-analyze verify (system units): %s", r)
	}

	home := filepath.Join(root, "home/builder")
	copyFile(t, nixgateBin, filepath.Join(home, ".local/bin/nixgate"), 0o755)
	runtime := filepath.Join(root, "run-user")
	os.MkdirAll(runtime, 0o700)
	r = run(t, []string{"HOME=" + home, "XDG_RUNTIME_DIR=" + runtime}, nil, "systemd-analyze", "verify", "--user", repoFile(t, "systemd/user/nixgate.service"))
	if r.code != 0 || r.stderr != "" {
		t.Errorf("systemd-analyze verify --user: %s", r)
	}

	r = run(t, nil, nil, "systemd-analyze", "security", "--offline=true", "--root="+root, "nixgate.service")
	m := regexp.MustCompile(`Overall exposure level for nixgate.service: ([0-9.]+)`).FindStringSubmatch(r.stdout + r.stderr)
	if m == nil {
		t.Fatalf("no exposure level in systemd-analyze security output: %s", r)
	}
	score, _ := strconv.ParseFloat(m[1], 64)
	t.Logf("systemd-analyze security: exposure %.1f", score)
	if score > 4.0 {
		t.Errorf("exposure level %.1f is worse than the 3.5 the README states (allowing 4.0)", score)
	}
}
