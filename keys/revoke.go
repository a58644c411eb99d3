package keys

// Revoke removes from the file at path (nixgate's keys file or an
// OpenSSH authorized_keys) every key line whose key has the fingerprint,
// or whose nixgate name (AuthorizedLine.Name) is, what; every other line
// stays byte for byte. It fails when nothing matches.
func Revoke(path, what string) (removed int, err error) {
	err = EditFile(path, 0o600, func(lines []string) ([]string, error) {
		drop := map[int]bool{} // line numbers
		for _, l := range authorizedLines(lines) {
			if l.Err == nil && (Fingerprint(l.Key) == what || l.Name == what) {
				drop[l.Number] = true
			}
		}
		if len(drop) == 0 {
			return nil, errorf("no key named or with fingerprint %q in %s", what, path)
		}
		var out []string
		for i, text := range lines {
			if !drop[i+1] {
				out = append(out, text)
			}
		}
		removed = len(drop)
		return out, nil
	})
	return removed, err
}
