// Package backup turns "become a backup server of this app" into one line:
// it writes the commands a person runs to start a mirror that follows an
// app (a docker run of the repository's image, a systemd unit written by
// `mirrornet service install`, a cloud-init file), and serves the page at
// /app/{APP-ID}/backup that shows them with the app ID, the bootstrap
// address and the public-URL flag filled in.
//
// Values that reach a shell are single-quoted; values that reach the page
// go through html/template. The public URL comes from the visitor (a form
// field): it must be an http or https URL with a host, or it is left out.
package backup

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Repo is the repository whose Dockerfile builds the mirror image.
const Repo = "https://github.com/mirrornet/mirrornet.git"

// Ports a mirror listens on (see Dockerfile and docs/OPERATORS.md).
const (
	P2PPort  = 4001
	HTTPPort = 8080
)

// ErrPublicURL reports a public URL that is not http(s)://host[:port][/path].
var ErrPublicURL = errors.New("backup: public URL must be an http:// or https:// URL with a host")

// Params fill the commands in.
type Params struct {
	// App is the app ID to follow.
	App string
	// Bootstrap are multiaddrs (ending in /p2p/PEER-ID) to join through.
	Bootstrap []string
	// PublicURL is the URL the new mirror is reached at, or "" (then the
	// mirror announces the address its peers observe).
	PublicURL string
}

// CheckPublicURL validates a public URL from a visitor or a flag.
func CheckPublicURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%w: %q", ErrPublicURL, s)
	}
	return nil
}

// env is the mirror's configuration as MIRRORNET_* variables, in order.
func (p Params) env() [][2]string {
	e := [][2]string{
		{"MIRRORNET_FOLLOW", p.App},
		{"MIRRORNET_PROFILE", "wan"},
	}
	if len(p.Bootstrap) > 0 {
		e = append(e, [2]string{"MIRRORNET_BOOTSTRAP", strings.Join(p.Bootstrap, ",")})
	}
	if p.PublicURL != "" {
		e = append(e, [2]string{"MIRRORNET_PUBLIC_URL", p.PublicURL})
	}
	return e
}

// Quote single-quotes s for a POSIX shell.
func Quote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:,=@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Docker is the one-line docker command: build the image from the
// repository's Dockerfile, then run it with a named data volume.
func (p Params) Docker() string {
	var b strings.Builder
	fmt.Fprintf(&b, "docker build -t mirrornet %s && docker run -d --name mirrornet --restart unless-stopped", Repo)
	fmt.Fprintf(&b, " -p %d:%d -p %d:%d/udp -p %d:%d -v mirrornet:/data", P2PPort, P2PPort, P2PPort, P2PPort, HTTPPort, HTTPPort)
	for _, kv := range p.env() {
		fmt.Fprintf(&b, " -e %s", Quote(kv[0]+"="+kv[1]))
	}
	b.WriteString(" mirrornet")
	return b.String()
}

// serviceFlags are the `mirrornet service install` flags for p.
func (p Params) serviceFlags() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--follow %s", Quote(p.App))
	for _, a := range p.Bootstrap {
		fmt.Fprintf(&b, " --bootstrap %s", Quote(a))
	}
	if p.PublicURL != "" {
		fmt.Fprintf(&b, " --public-url %s", Quote(p.PublicURL))
	}
	return b.String()
}

// Systemd is the one-line install as a systemd service: build the binary,
// put it on the PATH, write the unit, start it.
func (p Params) Systemd() string {
	return `go install github.com/mirrornet/mirrornet/cmd/mirrornet@latest && sudo install -m 0755 "$(go env GOPATH)/bin/mirrornet" /usr/local/bin/mirrornet && sudo mirrornet service install ` +
		p.serviceFlags() + " && sudo systemctl daemon-reload && sudo systemctl enable --now mirrornet"
}

// CloudInit is a cloud-init user-data file that installs docker and runs
// the Docker line at first boot.
func (p Params) CloudInit() string {
	var b strings.Builder
	b.WriteString("#cloud-config\n")
	b.WriteString("# A mirrornet backup server of app " + p.App + ". Open TCP 4001, UDP 4001 and TCP 8080 in the firewall.\n")
	b.WriteString("package_update: true\npackages:\n  - docker.io\n  - git\nruncmd:\n")
	b.WriteString("  - [systemctl, enable, --now, docker]\n")
	fmt.Fprintf(&b, "  - [sh, -c, %s]\n", yamlQuote(p.Docker()))
	return b.String()
}

// yamlQuote double-quotes s as a YAML scalar.
func yamlQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// UnitConfig is what `mirrornet service install` writes into the unit.
type UnitConfig struct {
	// Binary is the absolute path of the mirrornet binary.
	Binary string
	// DataDir holds the node's state (keys, blocks).
	DataDir string
	// Env are extra MIRRORNET_* settings, in order.
	Env [][2]string
}

// Unit is a systemd unit for a mirror: restarted on failure, stopped with
// SIGTERM (so it signs a leaving statement), no privileges, state only in
// DataDir.
func Unit(c UnitConfig) string {
	var b strings.Builder
	b.WriteString("# Written by `mirrornet service install`. Settings are MIRRORNET_* variables (see `mirrornet node -h`).\n")
	b.WriteString("[Unit]\nDescription=mirrornet mirror\nDocumentation=https://github.com/mirrornet/mirrornet/blob/main/docs/OPERATORS.md\n")
	b.WriteString("Wants=network-online.target\nAfter=network-online.target\n\n[Service]\n")
	fmt.Fprintf(&b, "ExecStart=%s node\n", systemdQuote(c.Binary))
	env := append([][2]string{
		{"MIRRORNET_DATA", c.DataDir},
		{"MIRRORNET_LISTEN", fmt.Sprintf("/ip4/0.0.0.0/tcp/%d,/ip4/0.0.0.0/udp/%d/quic-v1", P2PPort, P2PPort)},
		{"MIRRORNET_HTTP", fmt.Sprintf("0.0.0.0:%d", HTTPPort)},
	}, c.Env...)
	for _, kv := range env {
		fmt.Fprintf(&b, "Environment=%s\n", systemdQuote(kv[0]+"="+kv[1]))
	}
	b.WriteString("DynamicUser=yes\n")
	if strings.HasPrefix(c.DataDir, "/var/lib/") {
		fmt.Fprintf(&b, "StateDirectory=%s\n", strings.TrimPrefix(c.DataDir, "/var/lib/"))
	} else {
		fmt.Fprintf(&b, "ReadWritePaths=%s\n", systemdQuote(c.DataDir))
	}
	b.WriteString("KillSignal=SIGTERM\nTimeoutStopSec=30\nRestart=on-failure\nRestartSec=5\n")
	b.WriteString("NoNewPrivileges=yes\nProtectSystem=strict\nProtectHome=yes\nPrivateTmp=yes\nLimitNOFILE=65536\n\n")
	b.WriteString("[Install]\nWantedBy=multi-user.target\n")
	return b.String()
}

// systemdQuote double-quotes s for a unit file when it needs it.
func systemdQuote(s string) string {
	if !strings.ContainsAny(s, " \t\"'\\%$;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "%", "%%", "$", "$$")
	return `"` + r.Replace(s) + `"`
}
