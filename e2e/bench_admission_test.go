//go:build bench

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// noAdmissionPatch is what buildNoAdmission takes out of nixgate: the
// admission checks a session makes (drain, health, busy) and the
// background health check, each a whole line that must be found exactly
// once.
var noAdmissionPatch = map[string][]*regexp.Regexp{
	"gateway/session.go": {
		regexp.MustCompile(`(?m)^\s*Draining:\s*s\.draining,\n`),
		regexp.MustCompile(`(?m)^\s*Health:\s*s\.healthy,\n`),
		regexp.MustCompile(`(?m)^\s*Busy:\s*s\.buildsBusy,\n`),
	},
	"cmd/nixgate/serve.go": {
		regexp.MustCompile(`(?m)^\s*srv\.CheckHealth\(\)\n`),
	},
}

// buildNoAdmission builds nixgate from this source tree without its
// admission checks (noAdmissionPatch): the drain and health checks never
// run in it, every session is taken.
func buildNoAdmission(t testing.TB) string {
	t.Helper()
	return buildPatched(t, noAdmissionPatch)
}

// buildPatched builds nixgate from this source tree with the lines of
// patch taken out (go build -overlay, so that nothing else differs), as
// nixgateBin is built, and returns the binary.
func buildPatched(t testing.TB, patch map[string][]*regexp.Regexp) string {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	repo := repoFile(t, ".")
	overlay := map[string]string{}
	for file, lines := range patch {
		src := filepath.Join(repo, file)
		text := readFile(t, src)
		for _, re := range lines {
			if n := len(re.FindAllStringIndex(text, -1)); n != 1 {
				t.Fatalf("%s: %d lines match %s; want 1 (update the patch to the code)", file, n, re)
			}
			text = re.ReplaceAllString(text, "")
		}
		patched := filepath.Join(dir, strings.ReplaceAll(file, "/", "_"))
		writeFile(t, patched, text, 0o644)
		overlay[src] = patched
	}
	spec, err := json.Marshal(map[string]any{"Replace": overlay})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "overlay.json"), string(spec), 0o644)
	bin := filepath.Join(dir, "nixgate")
	args := []string{"build", "-overlay", filepath.Join(dir, "overlay.json"), "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/nixgate")...)
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building a patched nixgate: %v\n%s", err, out)
	}
	return bin
}

// admissionCost is nix store ping through three servers, alternated in
// one run, in ms: nixgate serve with its admission checks (a drain state
// read and a health verdict per session, the store checked every two
// seconds), the same nixgate without them, and OpenSSH's sshd with a
// plain forced nix-store.
type admissionCost struct {
	with, without, openssh, diff []float64
}

// measureAdmission pings each of with, without (serve builders) and
// ossh's plain forced command n times, rotating which goes first.
func measureAdmission(t testing.TB, with, without, ossh *builder, n int) admissionCost {
	t.Helper()
	var c admissionCost
	ping := func(bd *builder, key string) float64 {
		return timed(t, func() { bd.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+bd.Host(key)) })
	}
	// Warm up all three (page cache, store database).
	ping(with, "build")
	ping(without, "build")
	ping(ossh, "direct")
	for i := 0; i < n; i++ {
		var w, wo, o float64
		switch i % 3 {
		case 0:
			w, wo, o = ping(with, "build"), ping(without, "build"), ping(ossh, "direct")
		case 1:
			wo, o, w = ping(without, "build"), ping(ossh, "direct"), ping(with, "build")
		default:
			o, w, wo = ping(ossh, "direct"), ping(with, "build"), ping(without, "build")
		}
		c.with = append(c.with, w)
		c.without = append(c.without, wo)
		c.openssh = append(c.openssh, o)
		c.diff = append(c.diff, w-wo)
	}
	return c
}

// admissionBuilders starts the two serve builders measureAdmission
// compares: the same configuration, with [admission] min_free and the
// drain state in force on one, and a build without the checks on the
// other.
func admissionBuilders(t testing.TB) (with, without *builder) {
	t.Helper()
	bin := buildNoAdmission(t)
	with = newBuilder(t, modeServe)
	without = newBuilderWith(t, modeServe, builderOptions{bin: bin})
	for _, bd := range []*builder{with, without} {
		writeFile(t, bd.config, allowPingRate(t, readFile(t, bd.config))+"\n[admission]\nmin_free = \"64M\"\n", 0o644)
		bd.waitReload(t)
	}
	// The checks are on where they should be: a drain refuses there, and
	// not in the build without them.
	mustRun(t, nil, nixgateBin, "drain", "--config", with.config)
	mustRun(t, nil, nixgateBin, "drain", "--config", without.config)
	if r := with.nix(t, "nix", "store", "ping", "--store", "ssh://"+with.Host("build")); r.code == 0 || !strings.Contains(r.stderr, "builder draining") {
		t.Fatalf("nixgate with its admission checks took a session while draining: %s", r)
	}
	without.mustNix(t, "nix", "store", "ping", "--store", "ssh://"+without.Host("build"))
	mustRun(t, nil, nixgateBin, "drain", "--off", "--config", with.config)
	mustRun(t, nil, nixgateBin, "drain", "--off", "--config", without.config)
	if got := with.metric(t, "nixgate_healthy"); got != 1 {
		t.Fatalf("nixgate_healthy = %v; want 1 (the health check running)", got)
	}
	return with, without
}

// BenchmarkAdmissionOverhead measures what the drain and health checks
// add to a real `nix store ping --store ssh://…`: nixgate serve with
// them (min_free set, the drain state read per session, the store
// checked every two seconds) against the same source built without them,
// with OpenSSH's plain forced nix-store as the reference, alternated in
// the same run. Run it with bench/admission-overhead.sh.
func BenchmarkAdmissionOverhead(b *testing.B) {
	with, without := admissionBuilders(b)
	ossh := newBuilder(b, modeExec)
	b.ResetTimer()
	c := measureAdmission(b, with, without, ossh, b.N)
	b.StopTimer()
	b.ReportMetric(median(c.with), "ms/ping-with")
	b.ReportMetric(median(c.without), "ms/ping-without")
	b.ReportMetric(median(c.diff), "ms/added")
	b.ReportMetric(median(c.with)/median(c.without), "ratio")
	b.ReportMetric(0, "ns/op")
	if os.Getenv("NIXGATE_BENCH_REPORT") != "" {
		fmt.Printf("nix store ping, %d rounds, each server once per round in rotating order:\n", b.N)
		fmt.Printf("  OpenSSH, plain forced nix-store:        median %.1f ms, p90 %.1f ms\n", median(c.openssh), pct(c.openssh, 0.9))
		fmt.Printf("  nixgate serve, without admission checks: median %.1f ms, p90 %.1f ms\n", median(c.without), pct(c.without, 0.9))
		fmt.Printf("  nixgate serve, with drain and health:    median %.1f ms, p90 %.1f ms\n", median(c.with), pct(c.with, 0.9))
		fmt.Printf("  with / without %.3f; with - without per round: median %+.2f ms, p25 %+.2f, p75 %+.2f (nothing measurable: %s); with / OpenSSH %.2f\n",
			median(c.with)/median(c.without), median(c.diff), pct(c.diff, 0.25), pct(c.diff, 0.75), verdict(addsNothing(c.diff)), median(c.with)/median(c.openssh))
	}
}

// addsNothing is the admission checks' target, "nothing measurable", on
// the per-round differences (with − without): at least a quarter of the
// rounds were no slower with the checks (25th percentile at most 0). A
// build with them that is faster throughout meets it too: the checks
// cost about 1.5 µs a session (gateway's BenchmarkAdmissionPath), below
// what two builds of one source differ by.
func addsNothing(diff []float64) bool { return pct(diff, 0.25) <= 0 }

// allowPingRate returns the configuration cfg with a per_source_rate
// that a benchmark's pings from one address stay under: hundreds a
// minute in a long series, where the default of 120 is meant for a
// public port and would turn them away at connect.
func allowPingRate(t testing.TB, cfg string) string {
	t.Helper()
	out := strings.Replace(cfg, "[limits]\n", "[limits]\nper_source_rate = 100000\n", 1)
	if out == cfg {
		t.Fatalf("no [limits] table in the builder's configuration:\n%s", cfg)
	}
	return out
}
