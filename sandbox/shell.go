package sandbox

import (
	"bufio"
	"os"
	"strings"
)

// LoginShell returns the login shell of the account called name from
// /etc/passwd, or /bin/sh when it has none.
func LoginShell(name string) string {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return "/bin/sh"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) == 7 && fields[0] == name && fields[6] != "" {
			return fields[6]
		}
	}
	return "/bin/sh"
}
