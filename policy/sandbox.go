package policy

import "fmt"

// SandboxMode is how nixgate runs the Nix command. The zero SandboxMode
// is SandboxDirect.
type SandboxMode string

// The sandbox modes.
const (
	// SandboxDirect runs the Nix command as it is: Nix is installed for
	// the machine (/nix, or Debian's nix-bin).
	SandboxDirect SandboxMode = "direct"
	// SandboxUserNS runs it in nixgate's own user and mount namespace,
	// with store_dir as /nix and the home directory read-only.
	SandboxUserNS SandboxMode = "userns"
	// SandboxNixUserChroot runs it through the external nix-user-chroot.
	SandboxNixUserChroot SandboxMode = "nix-user-chroot"
	// SandboxProot runs it through PRoot (proot -b STORE:/nix).
	SandboxProot SandboxMode = "proot"
)

// SandboxConfig is the [sandbox] table.
type SandboxConfig struct {
	// Mode is how the Nix command runs. Default: SandboxDirect.
	Mode SandboxMode `toml:"mode"`
	// StoreDir is what the sandbox shows as /nix. "~/" is the build
	// user's home. Default: "~/.nix". Unused in direct mode. It must
	// exist: nixgate refuses one that does not, and never makes it.
	StoreDir string `toml:"store_dir"`
	// NixUserChroot is the nix-user-chroot binary: a path, or a name
	// looked up in PATH. Default: "nix-user-chroot".
	NixUserChroot string `toml:"nix_user_chroot"`
	// Proot is the proot binary: a path, or a name looked up in PATH.
	// Default: "proot".
	Proot string `toml:"proot"`
	// ProotBuildKeys, set to ProotBuildKeysAck, is the operator's
	// acknowledgement that in proot mode a build runs as the account
	// itself, uncontained, and lets build keys in. Empty (the default)
	// refuses build-role keys in proot mode; substitute keys work either
	// way. Unused in the other modes.
	ProotBuildKeys string `toml:"proot_build_keys"`
}

// ProotBuildKeysAck is the one value of [sandbox] proot_build_keys: the
// words say what the operator accepts.
const ProotBuildKeysAck = "same-uid-not-contained"

// ProotUncontained says why proot cannot contain a build: for messages.
const ProotUncontained = "proot cannot contain code that runs as the build account's own uid: a build can kill its proot tracer and then reach everything the account owns (its keys file, host key, store and Nix)"

// BuildKeysRefusal returns why build-role keys are refused under s, or ""
// when they are not: in proot mode without the acknowledgement.
func (s SandboxConfig) BuildKeysRefusal() string {
	if s.Mode != SandboxProot || s.ProotBuildKeys == ProotBuildKeysAck {
		return ""
	}
	return fmt.Sprintf("build keys are refused in sandbox.mode proot: %s; set [sandbox] proot_build_keys = %q to accept that", ProotUncontained, ProotBuildKeysAck)
}

func (v *validator) sandbox(s SandboxConfig) SandboxConfig {
	switch s.Mode {
	case "":
		s.Mode = SandboxDirect
	case SandboxDirect, SandboxUserNS, SandboxNixUserChroot, SandboxProot:
	default:
		v.fail("sandbox.mode", "unknown mode %q: want %q, %q, %q or %q", s.Mode, SandboxDirect, SandboxUserNS, SandboxNixUserChroot, SandboxProot)
	}
	if s.StoreDir == "" {
		s.StoreDir = "~/.nix"
	}
	if s.StoreDir[0] != '/' && (len(s.StoreDir) < 2 || s.StoreDir[:2] != "~/") {
		v.fail("sandbox.store_dir", "%q must be an absolute path or start with ~/", s.StoreDir)
	}
	if s.NixUserChroot == "" {
		s.NixUserChroot = "nix-user-chroot"
	}
	if s.Proot == "" {
		s.Proot = "proot"
	}
	if s.ProotBuildKeys != "" && s.ProotBuildKeys != ProotBuildKeysAck {
		v.fail("sandbox.proot_build_keys", "%q: the one value is %q, which accepts that %s", s.ProotBuildKeys, ProotBuildKeysAck, ProotUncontained)
	}
	return s
}

// String returns the mode's name.
func (m SandboxMode) String() string { return string(m) }
