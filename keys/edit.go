package keys

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// EditFile rewrites the text file at path through edit, which gets its
// lines (without their newlines) and returns the new ones. Lines edit
// keeps come back byte for byte. The file is replaced atomically and keeps
// its mode and owner; a missing file starts empty and is created with
// mode. When edit fails, the file is left as it was.
func EditFile(path string, mode os.FileMode, edit func(lines []string) ([]string, error)) error {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return errorf("%w", err)
	}
	uid, gid := -1, -1
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	var lines []string
	if len(data) > 0 {
		lines = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	}
	out, err := edit(lines)
	if err != nil {
		return err
	}
	text := strings.Join(out, "\n")
	if len(out) > 0 {
		text += "\n"
	}
	if err := writeAtomic(path, []byte(text), mode); err != nil {
		return err
	}
	if uid >= 0 && os.Geteuid() == 0 {
		if err := os.Lchown(path, uid, gid); err != nil {
			return errorf("%w", err)
		}
	}
	return nil
}

// writeAtomic writes data to a temporary file beside path and renames it
// into place, so that path holds the whole data or is left as it was.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return errorf("%w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return errorf("writing %s: %w", path, err)
	}
	return nil
}
