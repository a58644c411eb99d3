package policy

import "testing"

func TestListenV6Only(t *testing.T) {
	for _, tt := range []struct {
		addr string
		all  []string
		want bool
	}{
		{"[::]:22", []string{"0.0.0.0:22", "[::]:22"}, true},
		{"[::]:22", []string{"[::]:22"}, false},
		{"[::]:22", []string{"0.0.0.0:2222", "[::]:22"}, false},
		{"[::]:22", []string{"127.0.0.1:22", "[::]:22"}, true},
		{":22", []string{"0.0.0.0:22", ":22"}, true},
		{"0.0.0.0:22", []string{"0.0.0.0:22", "[::]:22"}, false},
		{"[::1]:22", []string{"0.0.0.0:22", "[::1]:22"}, false},
		{"bad", []string{"0.0.0.0:22", "bad"}, false},
	} {
		if got := ListenV6Only(tt.addr, tt.all); got != tt.want {
			t.Errorf("ListenV6Only(%q, %q) = %v; want %v", tt.addr, tt.all, got, tt.want)
		}
	}
}

func TestListenNetwork(t *testing.T) {
	all := []string{"0.0.0.0:22", "[::]:22", "[::]:23", "127.0.0.1:24", "[::1]:24", "host:25"}
	for addr, want := range map[string]string{"0.0.0.0:22": "tcp4", "[::]:22": "tcp6", "[::]:23": "tcp", "127.0.0.1:24": "tcp4", "[::1]:24": "tcp", "host:25": "tcp"} {
		if got := ListenNetwork(addr, all); got != want {
			t.Errorf("ListenNetwork(%q) = %q; want %q", addr, got, want)
		}
	}
}
