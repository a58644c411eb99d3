package e2e

import (
	"encoding/xml"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// plistNode is one element of a property list.
type plistNode struct {
	XMLName  xml.Name
	Text     string      `xml:",chardata"`
	Children []plistNode `xml:",any"`
}

// TestLaunchdPlist checks the macOS launch daemon against the systemd
// service (there is no launchd here): well-formed, the same command, and
// time for the drain before launchd's SIGKILL.
func TestLaunchdPlist(t *testing.T) {
	data, err := os.ReadFile(repoFile(t, "launchd/org.nixgate.serve.plist"))
	if err != nil {
		t.Fatal(err)
	}
	var root plistNode
	if err := xml.Unmarshal(data, &root); err != nil || root.XMLName.Local != "plist" || len(root.Children) != 1 {
		t.Fatalf("not a property list: %v", err)
	}
	dict := map[string]plistNode{}
	kids := root.Children[0].Children
	for i := 0; i+1 < len(kids); i += 2 {
		if kids[i].XMLName.Local != "key" {
			t.Fatalf("dict entry %d is a %s, not a key", i, kids[i].XMLName.Local)
		}
		dict[kids[i].Text] = kids[i+1]
	}
	if got := dict["Label"].Text; got != "org.nixgate.serve" {
		t.Errorf("Label = %q", got)
	}
	var argv []string
	for _, c := range dict["ProgramArguments"].Children {
		argv = append(argv, c.Text)
	}
	unit := readFile(t, repoFile(t, "systemd/nixgate.service"))
	exec := regexp.MustCompile(`(?m)^ExecStart=(.*)$`).FindStringSubmatch(unit)
	if exec == nil || strings.Join(argv, " ") != exec[1] {
		t.Errorf("ProgramArguments %q; want systemd's ExecStart %q", argv, exec)
	}
	if n, err := strconv.Atoi(dict["ExitTimeOut"].Text); err != nil || n < 300 {
		t.Errorf("ExitTimeOut %q: want at least the default drain_timeout, 300 s", dict["ExitTimeOut"].Text)
	}
}
