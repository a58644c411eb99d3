package keys

// Revoke removes from the file at path (nixgate's keys file or an
// OpenSSH authorized_keys) every key line whose key has the fingerprint,
// or whose nixgate name (see LineName) is, what. It fails when nothing
// matches.
func Revoke(path, what string) (removed int, err error) {
	err = EditFile(path, 0o600, func(lines []string) ([]string, error) {
		var out []string
		for _, l := range lines {
			if e, err := ParseLine(l); err == nil && (Fingerprint(e.Key) == what || LineName(e) == what) {
				removed++
				continue
			}
			out = append(out, l)
		}
		if removed == 0 {
			return nil, errorf("no key named or with fingerprint %q in %s", what, path)
		}
		return out, nil
	})
	return removed, err
}
