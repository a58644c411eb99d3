package policy

import (
	"errors"
	"fmt"
	"strings"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
)

// MaxCommandLen is the longest command string ParseCommand accepts. Nix's
// commands are well under 1 KiB even with a long --store URL.
const MaxCommandLen = 8192

// ErrEmptyCommand is returned by ParseCommand for a command with no words:
// a login without a command, such as a person typing "ssh builder".
var ErrEmptyCommand = errorf("no command")

// ParseCommand splits the command string an SSH client sent into argv the
// way a POSIX shell would, and refuses anything that is not one simple
// command of literal words: no lists, pipes, redirections, substitutions,
// expansions, globs, assignments, comments, newlines or NUL bytes. Quotes
// are removed: 'local?root=/x' and local?root=/x give the same word. An
// unquoted ? is taken literally, as Nix 2.20 and later send store URLs
// unquoted.
func ParseCommand(cmd string) ([]string, error) {
	if len(cmd) > MaxCommandLen {
		return nil, errorf("command is %d bytes long (limit %d)", len(cmd), MaxCommandLen)
	}
	if i := strings.IndexAny(cmd, "\x00\n\r"); i >= 0 {
		return nil, errorf("command contains %s: only one command of plain words is accepted", describeByte(cmd[i]))
	}
	if strings.TrimSpace(cmd) == "" {
		return nil, ErrEmptyCommand
	}
	parser := syntax.NewParser(syntax.Variant(syntax.LangPOSIX), syntax.KeepComments(true))
	file, err := parser.Parse(strings.NewReader(cmd), "")
	if err != nil {
		return nil, errorf("command is not valid shell syntax: %s", shortSyntaxError(err))
	}
	if len(file.Last) > 0 {
		return nil, errorf("command contains a comment")
	}
	if len(file.Stmts) != 1 {
		return nil, errorf("command contains several commands (;, & or newline)")
	}
	st := file.Stmts[0]
	switch {
	case st.Semicolon.IsValid() && !st.Background && !st.Coprocess:
		// "cmd;" is one statement to the parser, but a list to the
		// README's rule: no ; at all.
		return nil, errorf("command contains several commands (;, & or newline)")
	case len(st.Comments) > 0:
		return nil, errorf("command contains a comment")
	case st.Negated, st.Background, st.Coprocess:
		return nil, errorf("command uses !, & or |&: only one plain command is accepted")
	case len(st.Redirs) > 0:
		return nil, errorf("command contains a redirection")
	}
	call, ok := st.Cmd.(*syntax.CallExpr)
	if !ok {
		return nil, errorf("command is a shell %s, not one plain command", nodeKind(st.Cmd))
	}
	if len(call.Assigns) > 0 {
		return nil, errorf("command sets variables (NAME=value)")
	}
	argv := make([]string, 0, len(call.Args))
	for _, w := range call.Args {
		if err := checkLiteral(w); err != nil {
			return nil, err
		}
		// A Config of our own: with nil, expand shares and writes a package-level one.
		fields, err := expand.Fields(&expand.Config{}, w)
		if err != nil {
			return nil, errorf("word %q: %v", wordSource(cmd, w), err)
		}
		if len(fields) != 1 {
			return nil, errorf("word %q does not expand to one word", wordSource(cmd, w))
		}
		argv = append(argv, fields[0])
	}
	if len(argv) == 0 {
		return nil, ErrEmptyCommand
	}
	return argv, nil
}

// checkLiteral accepts a word made only of literal text, single-quoted
// text and double-quoted literal text.
func checkLiteral(w *syntax.Word) error {
	for i, part := range w.Parts {
		switch p := part.(type) {
		case *syntax.Lit:
			if i == 0 && strings.HasPrefix(p.Value, "~") {
				return errorf("command contains ~ expansion")
			}
			if hasUnescapedGlob(p.Value) {
				return errorf("command contains a glob (* or [)")
			}
		case *syntax.SglQuoted:
			if p.Dollar {
				return errorf("command contains $'…' quoting")
			}
		case *syntax.DblQuoted:
			if p.Dollar {
				return errorf("command contains $\"…\" quoting")
			}
			for _, q := range p.Parts {
				if _, ok := q.(*syntax.Lit); !ok {
					return errorf("command contains %s", nodeKind(q))
				}
			}
		default:
			return errorf("command contains %s", nodeKind(part))
		}
	}
	return nil
}

// hasUnescapedGlob reports whether an unquoted literal holds * or [ that
// a shell would expand. ? is left alone: see ParseCommand.
func hasUnescapedGlob(lit string) bool {
	for i := 0; i < len(lit); i++ {
		switch lit[i] {
		case '\\':
			i++
		case '*', '[':
			return true
		}
	}
	return false
}

func nodeKind(n syntax.Node) string {
	switch n.(type) {
	case *syntax.ParamExp:
		return "a variable expansion ($…)"
	case *syntax.CmdSubst:
		return "a command substitution ($(…) or `…`)"
	case *syntax.ArithmExp, *syntax.ArithmCmd:
		return "arithmetic expansion"
	case *syntax.ProcSubst:
		return "a process substitution"
	case *syntax.ExtGlob:
		return "a glob"
	case *syntax.BinaryCmd:
		return "list or pipeline (&&, || or |)"
	case *syntax.Subshell, *syntax.Block:
		return "group ( … ) or { … }"
	case *syntax.IfClause, *syntax.WhileClause, *syntax.ForClause, *syntax.CaseClause:
		return "compound command"
	case *syntax.FuncDecl:
		return "function definition"
	default:
		return fmt.Sprintf("construct (%T)", n)
	}
}

func wordSource(cmd string, w *syntax.Word) string {
	start, end := int(w.Pos().Offset()), int(w.End().Offset())
	if start < 0 || end > len(cmd) || start > end {
		return ""
	}
	return cmd[start:end]
}

func describeByte(b byte) string {
	switch b {
	case 0:
		return "a NUL byte"
	case '\n':
		return "a newline"
	default:
		return "a carriage return"
	}
}

// shortSyntaxError drops the position prefix the shell parser adds.
func shortSyntaxError(err error) string {
	var pe syntax.ParseError
	if errors.As(err, &pe) {
		return pe.Text
	}
	return err.Error()
}
