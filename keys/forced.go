package keys

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
)

// Exec mode's lines in an OpenSSH authorized_keys file:
//
//	restrict,command="/usr/local/bin/nixgate exec --config /etc/nixgate/nixgate.toml --key ci" ssh-ed25519 AAAA… ci@example
//
// written by AddForcedCommand and recognised by ForcedExec.

// ForcedExec is the command= of an authorized_keys line that runs
// nixgate exec.
type ForcedExec struct {
	// Program is argv[0]: "nixgate" or an absolute path ending in
	// /nixgate.
	Program string
	// Config is the --config value; empty when the line gives none.
	Config string
	// Key is the --key value.
	Key string
}

// ParseForcedExec reads command, the value of a command= option, as the
// account's shell would split it (see shellWords), and accepts exactly
//
//	[PATH/]nixgate exec [--config FILE] --key NAME
//
// with the two flags in either order and in any of the spellings Go's
// flag package takes (-key NAME, --key=NAME, …). Anything more, such as
// "; exec /bin/sh" after it, is an error: the line does not merely run
// nixgate.
func ParseForcedExec(command string) (ForcedExec, error) {
	argv, err := shellWords(command)
	if err != nil {
		return ForcedExec{}, errorf("command=%q: %w", command, err)
	}
	var f ForcedExec
	prog := argv[0]
	if filepath.Base(prog) != "nixgate" || (prog != "nixgate" && !filepath.IsAbs(prog)) {
		return ForcedExec{}, errorf("command=%q does not run nixgate (by name or absolute path)", command)
	}
	f.Program = prog
	if len(argv) < 2 || argv[1] != "exec" {
		return ForcedExec{}, errorf("command=%q does not run nixgate exec", command)
	}
	seen := map[string]bool{}
	for rest := argv[2:]; len(rest) > 0; {
		flag := rest[0]
		name, value, inline := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(flag, "-"), "-"), "=")
		if !strings.HasPrefix(flag, "-") || (name != "config" && name != "key") || seen[name] {
			return ForcedExec{}, errorf("command=%q: %q is not one of nixgate exec's --config FILE and --key NAME", command, flag)
		}
		seen[name] = true
		rest = rest[1:]
		if !inline {
			if len(rest) == 0 {
				return ForcedExec{}, errorf("command=%q: %s needs a value", command, flag)
			}
			value, rest = rest[0], rest[1:]
		}
		if name == "config" {
			f.Config = value
		} else {
			f.Key = value
		}
	}
	if f.Key == "" {
		return ForcedExec{}, errorf("command=%q has no --key NAME", command)
	}
	return f, nil
}

// shellWords splits command into the words a POSIX shell's `sh -c`
// would run, and fails unless it is one simple command of literal words:
// unquoted text, 'single-quoted' and "double-quoted" literal text, and
// backslash escapes. Anything the shell would expand or act on — lists,
// pipes, redirections, substitutions, variables, comments, ~, and the
// glob and brace characters * ? [ { — is an error, since OpenSSH hands
// command= to the account's shell. (A client's command is read by
// policy.ParseCommand instead, which takes an unquoted ? literally:
// nixgate runs that one without a shell.)
func shellWords(command string) ([]string, error) {
	if strings.ContainsAny(command, "\x00\n\r") {
		return nil, errors.New("more than one line")
	}
	f, err := syntax.NewParser(syntax.Variant(syntax.LangPOSIX), syntax.KeepComments(true)).Parse(strings.NewReader(command), "")
	if err != nil {
		return nil, fmt.Errorf("not valid shell syntax: %w", err)
	}
	if len(f.Stmts) != 1 || len(f.Last) > 0 {
		return nil, errors.New("not one command")
	}
	st := f.Stmts[0]
	call, ok := st.Cmd.(*syntax.CallExpr)
	if !ok || st.Semicolon.IsValid() || st.Negated || st.Background || st.Coprocess || len(st.Redirs) > 0 || len(st.Comments) > 0 || len(call.Assigns) > 0 || len(call.Args) == 0 {
		return nil, errors.New("not one plain command")
	}
	argv := make([]string, 0, len(call.Args))
	for _, w := range call.Args {
		for i, part := range w.Parts {
			if !literalPart(part, i == 0) {
				return nil, fmt.Errorf("word %d is not literal text", len(argv)+1)
			}
		}
		// A Config of our own: with nil, expand shares and writes a package-level one.
		fields, err := expand.Fields(&expand.Config{}, w)
		if err != nil || len(fields) != 1 {
			return nil, fmt.Errorf("word %d is not one literal word", len(argv)+1)
		}
		argv = append(argv, fields[0])
	}
	return argv, nil
}

// literalPart reports whether a part of a word is text the shell takes
// as it is (after removing quotes and escapes).
func literalPart(part syntax.WordPart, first bool) bool {
	switch p := part.(type) {
	case *syntax.Lit:
		if first && strings.HasPrefix(p.Value, "~") {
			return false
		}
		for i := 0; i < len(p.Value); i++ {
			switch p.Value[i] {
			case '\\':
				i++
			case '*', '?', '[', '{':
				return false
			}
		}
		return true
	case *syntax.SglQuoted:
		return !p.Dollar
	case *syntax.DblQuoted:
		if p.Dollar {
			return false
		}
		for _, q := range p.Parts {
			if _, ok := q.(*syntax.Lit); !ok {
				return false
			}
		}
		return true
	}
	return false
}

// ForcedExec returns the nixgate exec that e's command= option runs. It
// fails when e has no command=, when its options are malformed or
// repeated (OpenSSH then refuses the key, or may read it otherwise), or
// when the command is anything but exactly nixgate exec (see
// ParseForcedExec).
func (e Entry) ForcedExec() (ForcedExec, error) {
	opts, err := e.ParsedOptions()
	if err != nil {
		return ForcedExec{}, err
	}
	for _, o := range opts {
		if o.Name == "command" && o.HasValue {
			return ParseForcedExec(o.Value)
		}
	}
	return ForcedExec{}, errorf("no command= option")
}

// ForcesNixgate reports whether e's command= option runs exactly
// nixgate exec --key NAME and nothing else (see ParseForcedExec).
func (e Entry) ForcesNixgate() bool {
	_, err := e.ForcedExec()
	return err == nil
}

// ForcedCommandLine returns the authorized_keys line that makes OpenSSH
// run `nixgate exec` for g's key: nixgate is the program's path, config
// the configuration file's.
func (g Grant) ForcedCommandLine(nixgate, config string) string {
	cmd := fmt.Sprintf("%s exec --config %s --key %s", shellQuote(nixgate), shellQuote(config), shellQuote(g.Name))
	return Entry{Options: []string{"restrict", quoteOption("command", cmd)}, Key: g.Key.Key, Comment: g.Key.Comment}.String()
}

// ForcedCommandPresent reports whether the OpenSSH authorized_keys file
// at path holds g's key already as a restricted forced `nixgate exec
// --key NAME` for g's name, which AddForcedCommand keeps. Any other line
// with g's key is an error; a missing file holds nothing.
func ForcedCommandPresent(path string, g Grant) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, errorf("%w", err)
	}
	fp := Fingerprint(g.Key.Key)
	l, ok := findKey(ParseAuthorizedKeys(data), fp)
	switch {
	case !ok:
		return false, nil
	case l.ForcesNixgate() && l.Restricted() && l.Name == g.Name:
		return true, nil
	}
	return false, errorf("key %s is in %s already (line %d), but not as restricted nixgate exec --key %s: remove that line first (nixgate keys revoke --authorized-keys %s %s)", fp, path, l.Number, g.Name, path, fp)
}

// AddForcedCommand appends g's forced-command line to an OpenSSH
// authorized_keys file unless ForcedCommandPresent. A missing file is
// created with mode 0644 (sshd reads it as the account, which must not
// write it), and a missing directory with mode 0755, both owned by the
// caller.
func AddForcedCommand(path string, g Grant, nixgate, config string) error {
	present, err := ForcedCommandPresent(path, g)
	if err != nil || present {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return errorf("%w", err)
	}
	fp := Fingerprint(g.Key.Key)
	return EditFile(path, 0o644, func(lines []string) ([]string, error) {
		if l, ok := findKey(authorizedLines(lines), fp); ok {
			return nil, errorf("key %s is in %s already (line %d)", fp, path, l.Number)
		}
		return append(lines, g.ForcedCommandLine(nixgate, config)), nil
	})
}
