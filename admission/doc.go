// Package admission decides whether this builder takes new sessions at
// all, before any key or command is looked at: an operator's drain, kept
// as a file in serve's state_dir so that serve and exec mode, reloads and
// restarts all see the same state; and the builder's health, whether Nix
// there can work (its store writable, free space above min_free, the
// daemon answering). Refusing at connect is what lets Nix move to the
// next builder instead of failing the build. It also keeps the build
// slots of serve mode (Slots): how many builds run at once, builder-wide
// and per key, with a fair queue for the builds beyond; and, for exec
// mode, where each session is a process, the same slots and a key's
// max_sessions across processes (LockDir), in a directory of files
// locked with flock(2) that the kernel releases when a process ends.
package admission
