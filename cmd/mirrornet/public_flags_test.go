package main

import (
	"bytes"
	"strings"
	"testing"
)

// Malformed --public-url and --app values are one-line usage errors at
// start-up; good ones reach the node's config.
func TestPublicFlags(t *testing.T) {
	env := func() *cmdEnv {
		return &cmdEnv{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, getenv: func(string) string { return "" }}
	}
	for _, args := range [][]string{
		{"--public-url", "mirror.example.org"},
		{"--public-url", "https://mirror.example.org/path"},
		{"--app", "app.example.org"},
		{"--app", "app.example.org=not-an-app"},
		{"--trusted-proxy", "example.org"},
		{"--https", "127.0.0.1:0"}, // no name to get a certificate for
	} {
		_, _, err := nodeConfig(env(), append([]string{"--data", t.TempDir()}, args...))
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want a one-line error", args, err)
		}
	}
	cfg, _, err := nodeConfig(env(), []string{"--data", t.TempDir(), "--public-url", "https://mirror.example.org",
		"--trusted-proxy", "10.0.0.0/8", "--https", ":8443", "--acme-email", "ops@example.org"})
	if err != nil || cfg.PublicURL != "https://mirror.example.org" || cfg.TrustedProxies[0] != "10.0.0.0/8" || cfg.HTTPSAddr != ":8443" {
		t.Fatalf("%+v %v", cfg, err)
	}
}
