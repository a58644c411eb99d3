package sandbox

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/nixgate/nixgate/policy"
)

// ExpandDirs returns dirs with a leading "~/" replaced by home. Entries
// that need a home when home is empty are dropped.
func ExpandDirs(dirs []string, home string) []string {
	out := make([]string, 0, len(dirs))
	for _, d := range dirs {
		if rest, ok := strings.CutPrefix(d, "~/"); ok {
			if home == "" {
				continue
			}
			d = filepath.Join(home, rest)
		}
		out = append(out, d)
	}
	return out
}

// Resolve returns the path of prog in the first of dirs (after
// ExpandDirs) that holds an executable file of that name. The client's
// spelling of argv[0] plays no part: nixgate always runs what it finds
// here.
func Resolve(prog policy.Program, dirs []string, home string) (string, error) {
	if prog == "" {
		return "", errorf("no program to resolve")
	}
	searched := ExpandDirs(dirs, home)
	for _, d := range searched {
		p := filepath.Join(d, string(prog))
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errorf("%s not found in %s (set nix.bin_dirs to the directory that holds it)", prog, strings.Join(searched, ", "))
}

// Which returns the path of prog that a command of cfg's for account a
// runs, as the command sees it, and the directory list it was found in.
// In the sandbox modes /nix is the store directory (StoreDir), and only
// the bin_dirs entries the operator named can lie inside it (see
// policy.Config.BinDirs).
func Which(cfg *policy.Config, a Account, prog policy.Program) (path string, dirs []string, err error) {
	dirs = cfg.BinDirs()
	if cfg.Sandbox.Mode == policy.SandboxDirect || cfg.Sandbox.Mode == "" {
		path, err = Resolve(prog, dirs, a.Home)
		return path, dirs, err
	}
	store := StoreDir(cfg, a)
	for _, d := range ExpandDirs(dirs, a.Home) {
		host := d
		if rest, ok := strings.CutPrefix(d, "/nix/"); ok {
			host = filepath.Join(store, rest)
		}
		p := filepath.Join(host, string(prog))
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return filepath.Join(d, string(prog)), dirs, nil
		}
	}
	return "", dirs, errorf("%s not found in %s (set nix.bin_dirs to the directory that holds it)", prog, strings.Join(dirs, ", "))
}
