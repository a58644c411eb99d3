package policy

import (
	"fmt"
	"strings"
	"time"
)

// The defaults of [key_source].
const (
	// DefaultKeySourceTimeout bounds one run of the key source command.
	DefaultKeySourceTimeout = 5 * time.Second
	// DefaultKeySourceCache is how long an answer of the key source
	// command is used again for the same key.
	DefaultKeySourceCache = 60 * time.Second
)

// KeySourceConfig is the [key_source] table: a program that answers, for
// a key a client offers, the keys-file lines that may log in with it, as
// OpenSSH's AuthorizedKeysCommand does (serve mode). The zero
// KeySourceConfig has no command: only the configured keys log in.
type KeySourceConfig struct {
	// Command is the program, an absolute path, and its arguments, run
	// without a shell. In each argument %u is replaced by the user the
	// client logs in as, %t by the key's type, %f by its SHA256
	// fingerprint, %k by the key in base64 and %% by %. Empty means no
	// key source.
	Command []string
	// Timeout bounds one run: a command that takes longer is killed and
	// the key refused. Load sets DefaultKeySourceTimeout when unset.
	Timeout time.Duration
	// Cache is how long an answer (keys, or none) is used again for the
	// same key before the command runs again. Load sets
	// DefaultKeySourceCache when unset. A failed run is not cached.
	Cache time.Duration
}

// fileKeySource is the [key_source] table as written.
type fileKeySource struct {
	Command []string `toml:"command"`
	Timeout string   `toml:"timeout"`
	Cache   string   `toml:"cache"`
}

// KeySourceArgv returns c.Command with its tokens replaced for user and
// a key of type typ with fingerprint fp and base64 form b64.
func (c KeySourceConfig) KeySourceArgv(user, typ, fp, b64 string) []string {
	r := strings.NewReplacer("%%", "%", "%u", user, "%t", typ, "%f", fp, "%k", b64)
	argv := make([]string, len(c.Command))
	for i, a := range c.Command {
		argv[i] = r.Replace(a)
	}
	return argv
}

func (v *validator) keySource(f fileKeySource) KeySourceConfig {
	c := KeySourceConfig{Command: f.Command, Timeout: DefaultKeySourceTimeout, Cache: DefaultKeySourceCache}
	v.duration("key_source.timeout", f.Timeout, &c.Timeout)
	v.duration("key_source.cache", f.Cache, &c.Cache)
	if len(f.Command) == 0 {
		if f.Timeout != "" || f.Cache != "" {
			v.fail("key_source.command", "missing: name the program (an absolute path) that answers which keys may log in")
		}
		return c
	}
	if !strings.HasPrefix(f.Command[0], "/") {
		v.fail("key_source.command", "%q must be an absolute path: the command runs without a shell or PATH", f.Command[0])
	}
	for i, a := range f.Command {
		if bad := badToken(a); bad != "" {
			v.fail(fmt.Sprintf("key_source.command[%d]", i), "%q: unknown token %q (%%u user, %%t key type, %%f fingerprint, %%k key, %%%% a %%)", a, bad)
		}
	}
	return c
}

// badToken returns the first % token in a that KeySourceArgv does not
// know; "" when there is none.
func badToken(a string) string {
	for i := 0; i < len(a); i++ {
		if a[i] != '%' {
			continue
		}
		if i+1 >= len(a) {
			return "%"
		}
		if !strings.ContainsRune("utfk%", rune(a[i+1])) {
			return a[i : i+2]
		}
		i++
	}
	return ""
}
