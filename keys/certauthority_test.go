package keys

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAddCertAuthority(t *testing.T) {
	caLine := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0nUc4ChNnd1VOVyS6mW3eiBkNR0bHtAnNALhG1n7cC ci-ca"
	ca, err := ParseLine(caLine)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ssh", "authorized_keys")
	for _, principal := range []string{"ci-build", "ci-cache", "ci-build"} {
		if _, err := AddCertAuthority(p, ca, principal, "/usr/bin/nixgate", "/etc/nixgate/nixgate.toml"); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(p)
	want := `cert-authority,principals="ci-build",restrict,command="/usr/bin/nixgate exec --config /etc/nixgate/nixgate.toml --key ci-build" ` + caLine + "\n" +
		`cert-authority,principals="ci-cache",restrict,command="/usr/bin/nixgate exec --config /etc/nixgate/nixgate.toml --key ci-cache" ` + caLine + "\n"
	if string(data) != want {
		t.Fatalf("authorized_keys =\n%s\nwant\n%s", data, want)
	}
	// The lines read back as nixgate's forced command for the principal.
	for i, l := range ParseAuthorizedKeys(data) {
		if !l.ForcesNixgate() || !l.Restricted() || !l.certAuthority() || l.Forced.Key != []string{"ci-build", "ci-cache"}[i] {
			t.Errorf("line %d reads back as %+v", l.Number, l)
		}
	}
	// The CA's key for the principal forcing something else, or as a
	// user's key: errors, and the file stays.
	for _, other := range []string{
		`cert-authority,principals="ci-x",command="nix-store --serve" ` + caLine,
		caLine,
	} {
		os.WriteFile(p, []byte(other+"\n"), 0o644)
		if _, err := AddCertAuthority(p, ca, "ci-x", "/usr/bin/nixgate", "/c"); err == nil || !strings.Contains(err.Error(), "remove that line first") {
			t.Errorf("with %q: %v", other, err)
		}
		if data, _ := os.ReadFile(p); string(data) != other+"\n" {
			t.Errorf("the file changed: %q", data)
		}
	}
}
