module github.com/nixgate/nixgate

go 1.26.8

require (
	github.com/pelletier/go-toml/v2 v2.4.3
	golang.org/x/crypto v0.59.0
	golang.org/x/sys v0.50.0
	mvdan.cc/sh/v3 v3.14.1
)

require (
	github.com/anmitsu/go-shlex v0.0.0-20200514113438-38f4b401e2be // indirect
	github.com/coreos/go-systemd/v22 v22.7.0 // indirect
	github.com/gliderlabs/ssh v0.3.8 // indirect
	golang.org/x/time v0.16.0 // indirect
)
