package check

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path"
	"strings"
	"time"

	"github.com/nixgate/nixgate/policy"
)

// DefaultSSHDConfig is the sshd configuration checkSSHDCerts reads when
// Options.SSHDConfig is empty.
const DefaultSSHDConfig = "/etc/ssh/sshd_config"

// checkSSHDCerts checks, in exec mode with [[cas]], the sshd settings
// nixgate exec's second look at a certificate stands on: it reads the
// certificate sshd accepted from the file SSH_USER_AUTH names, which
// sshd sets last, over anything the client or the account set, only
// with ExposeAuthInfo yes. Without it, or where a client may send
// SSH_USER_AUTH (AcceptEnv) or the account's ~/.ssh/environment may set
// it (PermitUserEnvironment), a client could name a file of its own:
// another certificate of the principal, unrevoked, in place of the one
// that logged in. sshd -T says what sshd would use; when it cannot be
// asked, check says so.
func checkSSHDCerts(cfg *policy.Config, a *account, config string) []Result {
	if len(cfg.CAs) == 0 {
		return nil
	}
	if config == "" {
		config = DefaultSSHDConfig
	}
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, sshd, "-T", "-f", config, "-C", "user="+a.name+",host=localhost,addr=127.0.0.1")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return []Result{{"sshd", Warn, fmt.Sprintf("cannot ask sshd (%s -T -f %s) whether nixgate exec may trust SSH_USER_AUTH for certificates: %v %s", sshd, config, err, strings.TrimSpace(errOut.String())),
			"run nixgate check as root, with --sshd-config the file sshd runs with"}}
	}
	return sshdCertSettings(out.String(), config)
}

// sshdCertSettings judges sshd -T's output for checkSSHDCerts.
func sshdCertSettings(settings, config string) []Result {
	var expose, userEnv string
	var accept []string
	for _, line := range strings.Split(settings, "\n") {
		name, value, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch strings.ToLower(name) {
		case "exposeauthinfo":
			expose = value
		case "permituserenvironment":
			userEnv = value
		case "acceptenv":
			accept = append(accept, strings.Fields(value)...)
		}
	}
	var rs []Result
	if expose != "yes" {
		rs = append(rs, Result{"sshd", Fail, "sshd's ExposeAuthInfo is not yes: nixgate exec cannot see which certificate logged in, and refuses principals' sessions", "add ExposeAuthInfo yes to " + config + " and reload sshd"})
	}
	for _, p := range accept {
		if ok, _ := path.Match(p, "SSH_USER_AUTH"); ok {
			rs = append(rs, Result{"sshd", Fail, fmt.Sprintf("sshd's AcceptEnv %q lets a client send SSH_USER_AUTH, the file nixgate exec reads the certificate from", p), "narrow AcceptEnv in " + config + " (Debian's is LANG LC_*) and reload sshd"})
		}
	}
	if userEnv != "" && userEnv != "no" {
		if ok, _ := path.Match(userEnv, "SSH_USER_AUTH"); ok || userEnv == "yes" {
			rs = append(rs, Result{"sshd", Fail, fmt.Sprintf("sshd's PermitUserEnvironment is %q: a ~/.ssh/environment could set SSH_USER_AUTH", userEnv), "set PermitUserEnvironment no in " + config + " and reload sshd"})
		}
	}
	if len(rs) == 0 {
		rs = append(rs, Result{"sshd", OK, "sshd sets SSH_USER_AUTH itself (ExposeAuthInfo yes) and lets no client or ~/.ssh/environment set it: nixgate exec's certificate check can trust it", ""})
	}
	return rs
}
