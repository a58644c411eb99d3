package sandbox

// The hidden subcommands nixgate re-executes itself as.
const (
	// HelperCommand runs inside the sandbox: it mounts, drops its
	// capabilities, resolves the program and execs it.
	HelperCommand = "sandbox-exec"
	// NestCommand starts HelperCommand in a new user and mount namespace
	// and waits for it; nix-user-chroot mode runs it inside the external
	// sandbox, to make the home read-only there too.
	NestCommand = "sandbox-nest"
)
