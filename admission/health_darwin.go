package admission

import "golang.org/x/sys/unix"

// readOnly reports whether the file system of st is mounted read-only.
func readOnly(st *unix.Statfs_t) bool { return st.Flags&unix.MNT_RDONLY != 0 }
