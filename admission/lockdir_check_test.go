package admission

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestRuntimeDirCheckMain: the hidden subcommand nixgate check runs as
// the build account reports what OpenRuntimeDir does, as JSON.
func TestRuntimeDirCheckMain(t *testing.T) {
	state := t.TempDir()
	tests := []struct {
		name      string
		setup     func(t *testing.T)
		wantPath  string
		wantError string
	}{
		{"made in state_dir", func(t *testing.T) {}, filepath.Join(state, RuntimeDirName), ""},
		{"written by others", func(t *testing.T) { mkdir(t, filepath.Join(state, RuntimeDirName), 0o777) }, "", "may be written by others (mode 0777; want 0700)"},
	}
	for _, tt := range tests {
		tt.setup(t)
		var out, errb bytes.Buffer
		if code := RuntimeDirCheckMain([]string{state}, &out, &errb); code != 0 || errb.Len() != 0 {
			t.Fatalf("%s: RuntimeDirCheckMain = %d, stderr %q; want 0 and nothing", tt.name, code, errb.String())
		}
		var r RuntimeDirReport
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("%s: %q: %v", tt.name, out.String(), err)
		}
		if r.Path != tt.wantPath || (tt.wantError == "") != (r.Error == "") || !strings.Contains(r.Error, tt.wantError) {
			t.Errorf("%s: report %+v; want path %q, error with %q", tt.name, r, tt.wantPath, tt.wantError)
		}
	}
	var out, errb bytes.Buffer
	if code := RuntimeDirCheckMain(nil, &out, &errb); code != 2 || out.Len() != 0 || !strings.HasPrefix(errb.String(), "admission: usage: ") {
		t.Errorf("RuntimeDirCheckMain(no argument) = %d, %q, %q; want 2 and the usage on stderr", code, out.String(), errb.String())
	}
}
