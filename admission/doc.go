// Package admission decides whether this builder takes new sessions at
// all, before any key or command is looked at: an operator's drain, kept
// as a file in serve's state_dir so that serve and exec mode, reloads and
// restarts all see the same state. Refusing at connect is what lets Nix
// move to the next builder instead of failing the build.
package admission
