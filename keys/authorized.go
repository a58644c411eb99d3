package keys

import "strings"

// The one place an authorized_keys file is read line by line: nixgate's
// keys file (ParseFile), `nixgate keys list --authorized-keys`, check's
// authorized_keys check, ForcedCommandPresent, AddForcedCommand and
// Revoke all read their lines through ParseAuthorizedKeys, each line
// with ParseLine and its options with the option reader (options.go).

// AuthorizedLine is one line of an authorized_keys file that is neither
// blank nor a comment, as ParseAuthorizedKeys reads it.
type AuthorizedLine struct {
	// Number is the line's number in the file, counting from 1.
	Number int
	// Entry is the line's options as written, its key and its comment:
	// its methods (ParsedOptions, Option, Restricted) read the options.
	// The zero Entry when Err is set.
	Entry
	// Name is the line's nixgate name: its name= option, the --key of
	// the nixgate exec it forces, or else its comment. Empty when Err is
	// set.
	Name string
	// Forced is the nixgate exec that the line's command= runs (see
	// Entry.ForcedExec); the zero ForcedExec when ForcedErr is set.
	Forced ForcedExec
	// ForcedErr says why the line forces no nixgate exec: no command=,
	// malformed or repeated options, or a command that is not exactly
	// nixgate exec. Nil when the line forces one.
	ForcedErr error
	// Err says why the line is no key line (see ParseLine); sshd passes
	// over such a line. Nil for a key line.
	Err error
}

// ForcesNixgate reports whether l is a key line whose command= runs
// exactly nixgate exec --key NAME and nothing else.
func (l AuthorizedLine) ForcesNixgate() bool { return l.Err == nil && l.ForcedErr == nil }

// ParseAuthorizedKeys reads data, an OpenSSH authorized_keys file (or
// nixgate's keys file, which has its syntax), as sshd reads one: lines
// end at \n (a \r before it is white space), and blank lines and lines
// whose first non-blank character is # are comments, left out. Every
// other line is in the result, in order, a line that is no key with its
// Err set: whether that is an error is the caller's to say. Empty data
// has no lines.
func ParseAuthorizedKeys(data []byte) []AuthorizedLine {
	return authorizedLines(strings.Split(string(data), "\n"))
}

// authorizedLines is ParseAuthorizedKeys for a file's lines, as EditFile
// gives them: lines[i] is line i+1.
func authorizedLines(lines []string) []AuthorizedLine {
	var out []AuthorizedLine
	for i, text := range lines {
		if t := strings.TrimSpace(text); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		l := AuthorizedLine{Number: i + 1}
		l.Entry, l.Err = ParseLine(text)
		if l.Err != nil {
			l.Entry = Entry{}
			out = append(out, l)
			continue
		}
		l.Forced, l.ForcedErr = l.Entry.ForcedExec()
		l.Name = lineName(l.Entry, l.Forced, l.ForcedErr)
		out = append(out, l)
	}
	return out
}

// findKey returns the first key line of lines with the key whose
// fingerprint is fp; ok is false when there is none.
func findKey(lines []AuthorizedLine, fp string) (l AuthorizedLine, ok bool) {
	for _, l := range lines {
		if l.Err == nil && Fingerprint(l.Key) == fp {
			return l, true
		}
	}
	return AuthorizedLine{}, false
}
