package policy

import "strings"

// refusedEnv are the [nix] env variables nixgate refuses, with the
// reason. They either make the dynamic loader or libc load code or files
// they name (the variables glibc drops for setuid programs, and macOS's
// DYLD_*: set for Nix, they run other code in every session), or move
// Nix to another store, state or configuration than the one nixgate's
// nix.store names (the store of a session is nixgate's decision, made per
// key in nix.store and nix.allowed_stores). NIX_CONFIG stays allowed: its
// text is in nixgate's configuration itself, not in a file the build
// account might write. NIX_DAEMON_SOCKET_PATH stays allowed: it picks
// which daemon a daemon store talks to, as the operator's own setting.
var refusedEnv = map[string]string{
	"GCONV_PATH":       "it makes glibc load code (iconv modules) from the directory it names",
	"GETCONF_DIR":      "glibc drops it for setuid programs: it makes libc read files it names",
	"GLIBC_TUNABLES":   "glibc drops it for setuid programs: it changes how libc and the loader behave",
	"HOSTALIASES":      "glibc drops it for setuid programs: it makes libc read files it names",
	"LOCALDOMAIN":      "glibc drops it for setuid programs: it changes name resolution",
	"LOCPATH":          "glibc drops it for setuid programs: it makes libc load locale files it names",
	"MALLOC_TRACE":     "glibc drops it for setuid programs: it makes libc write to the file it names",
	"NIS_PATH":         "glibc drops it for setuid programs: it changes name lookups",
	"NLSPATH":          "glibc drops it for setuid programs: it makes libc load message catalogs it names",
	"RESOLV_HOST_CONF": "glibc drops it for setuid programs: it makes libc read files it names",
	"RES_OPTIONS":      "glibc drops it for setuid programs: it changes name resolution",
	"BASH_ENV":         "it makes every non-interactive bash run the file it names",
	"ENV":              "it makes every interactive POSIX shell run the file it names",

	"NIX_REMOTE":          "it changes which store or daemon Nix uses; set nix.store instead",
	"NIX_STORE_DIR":       "it moves the Nix store away from the one nix.store names",
	"NIX_STORE":           "it moves the Nix store away from the one nix.store names",
	"NIX_STATE_DIR":       "it moves Nix's database and profiles away from the store nix.store names",
	"NIX_LOG_DIR":         "it moves Nix's build logs away from the store nix.store names",
	"NIX_CONF_DIR":        "it makes Nix read nix.conf from another directory, which may be writable by the build account; put settings in NIX_CONFIG",
	"NIX_USER_CONF_FILES": "it makes Nix read configuration files it names, which may be writable by the build account; put settings in NIX_CONFIG",
	"NIX_BIN_DIR":         "it makes Nix run helper programs from the directory it names; set nix.bin_dirs instead",
	"NIX_LIBEXEC_DIR":     "it makes Nix run helper programs from the directory it names",
	"NIX_DATA_DIR":        "it makes Nix read its data files from the directory it names",
	"NIX_BUILD_HOOK":      "it makes Nix run the program it names for every build",
}

// envRefusal returns why the variable name may not be set in [nix] env,
// or "" when it may.
func envRefusal(name string) string {
	if reservedEnv[name] {
		return name + " is set by nixgate itself (use nix.bin_dirs to change where Nix is found)"
	}
	upper := strings.ToUpper(name)
	switch {
	case strings.HasPrefix(upper, "LD_"):
		return "refused: the dynamic loader reads LD_* variables, which make every Nix command load or run other code"
	case strings.HasPrefix(upper, "DYLD_"):
		return "refused: the macOS dynamic loader reads DYLD_* variables, which make every Nix command load other code"
	}
	if r, ok := refusedEnv[upper]; ok {
		return "refused: " + r
	}
	return ""
}
