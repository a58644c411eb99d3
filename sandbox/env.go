package sandbox

import (
	"maps"
	"os"
	"slices"
	"strings"
)

// SystemPath is the tail of every PATH nixgate builds.
var SystemPath = []string{"/usr/local/bin", "/usr/bin", "/bin"}

// Account is the user a command runs as.
type Account struct {
	// Name is the login name.
	Name string
	// Home is the home directory. Empty means "/".
	Home string
}

// Path returns a PATH made of the Nix directories that exist (in order,
// "~/" expanded for a), then SystemPath, without duplicates.
func Path(binDirs []string, a Account) string {
	var dirs []string
	for _, d := range ExpandDirs(binDirs, a.Home) {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			dirs = append(dirs, d)
		}
	}
	dirs = append(dirs, SystemPath...)
	var out []string
	for _, d := range dirs {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return strings.Join(out, ":")
}

// Env returns the clean environment for a Nix command: PATH (see Path),
// HOME, USER, LOGNAME, then extra in sorted order. Nothing from nixgate's
// own environment or the client's is passed on.
func Env(binDirs []string, a Account, extra map[string]string) []string {
	home := a.Home
	if home == "" {
		home = "/"
	}
	env := []string{
		"PATH=" + Path(binDirs, a),
		"HOME=" + home,
		"USER=" + a.Name,
		"LOGNAME=" + a.Name,
	}
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		env = append(env, k+"="+extra[k])
	}
	return env
}
