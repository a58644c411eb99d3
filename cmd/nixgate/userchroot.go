package main

import (
	"fmt"
	"io"

	"github.com/nixgate/nixgate/policy"
	"github.com/nixgate/nixgate/sandbox"
)

const userChrootExample = `Runs COMMAND with DIR as /nix and the rest of the file system as it is,
in a user and mount namespace of its own: no root, no setuid binary, no
external program. The command line is nix-user-chroot's, and nixgate linked
as nix-user-chroot behaves the same.

Example:
  nixgate user-chroot ~/.nix bash -l
  nixgate user-chroot ~/.nix nix-store --version`

func runUserChroot(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Fprintf(stdout, "Usage: nixgate user-chroot DIR COMMAND [ARG…]\n\n%s\n", userChrootExample)
		return exitOK
	}
	if len(args) < 2 {
		fmt.Fprintln(stderr, "nixgate user-chroot: usage: nixgate user-chroot DIR COMMAND [ARG…]")
		return exitUsage
	}
	code, err := sandbox.UserChroot(args[0], args[1:])
	if err != nil {
		fmt.Fprintln(stderr, "nixgate user-chroot: "+policy.Line(err))
		return 126
	}
	return code
}
