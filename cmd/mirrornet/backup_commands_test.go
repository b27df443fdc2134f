package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mirrornet/mirrornet/internal/backup"
)

// dockerfileEnv is the ENV the repository's Dockerfile sets in its final
// image.
func dockerfileEnv(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(raw), "\\\n", " ")
	env := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "FROM ") {
			clear(env) // only the last stage's ENV reaches the image
		}
		rest, ok := strings.CutPrefix(line, "ENV ")
		if !ok {
			continue
		}
		for _, kv := range strings.Fields(rest) {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	return env
}

// The commands the backup page hands out (the docker line and the systemd
// line) are accepted by this binary: the docker line's settings, on top of
// the image's ENV and its CMD `node`, make a valid mirror config that
// follows the app through the bootstrap at the public URL; the systemd
// line's `service install` flags exist and parse.
func TestBackupPageCommandsAreAccepted(t *testing.T) {
	app := "app-bo3yt5ha7jqo6xfbhtc3z4rw6v4m3j2jmo7aoaoamtgtpvqfhwuuq"
	boot := "/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWSUv8bhHRsKEPAfH3qqkdLSao9h33AmcNXWf6M2JYejz4"
	p := backup.Params{App: app, Bootstrap: []string{boot}, PublicURL: "https://mirror.example.org"}

	env := dockerfileEnv(t)
	if env["MIRRORNET_DATA"] == "" || env["MIRRORNET_HTTP"] == "" {
		t.Fatalf("Dockerfile ENV parsed as %v", env)
	}
	fields := strings.Fields(p.Docker())
	for i, f := range fields {
		if f == "-e" && i+1 < len(fields) {
			k, v, _ := strings.Cut(strings.Trim(fields[i+1], "'"), "=")
			env[k] = v
		}
	}
	var out, errb bytes.Buffer
	cenv := &cmdEnv{getenv: func(k string) string { return env[k] }, stdout: &out, stderr: &errb}
	env["MIRRORNET_DATA"] = t.TempDir() // the volume
	cfg, _, err := nodeConfig(cenv, nil)
	if err != nil {
		t.Fatalf("the docker line's settings: %v", err)
	}
	if !slices.Contains(cfg.Follow, app) || !slices.Contains(cfg.Bootstrap, boot) || cfg.PublicURL != p.PublicURL || cfg.Profile != "wan" {
		t.Errorf("docker line gives follow %v bootstrap %v public %q profile %q", cfg.Follow, cfg.Bootstrap, cfg.PublicURL, cfg.Profile)
	}

	line := p.Systemd()
	_, rest, ok := strings.Cut(line, "mirrornet service install ")
	if !ok {
		t.Fatalf("systemd line has no 'mirrornet service install': %s", line)
	}
	rest, _, _ = strings.Cut(rest, " &&")
	args := []string{"service", "install"}
	for _, f := range strings.Fields(rest) {
		args = append(args, strings.Trim(f, "'"))
	}
	dir := t.TempDir()
	unit := filepath.Join(dir, "mirrornet.service")
	args = append(args, "--unit", unit, "--data", filepath.Join(dir, "data"), "--binary", "/usr/local/bin/mirrornet")
	if err := run(context.Background(), args, func(string) string { return "" }, &out, &errb); err != nil {
		t.Fatalf("the systemd line's %v: %v", args, err)
	}
	raw, _ := os.ReadFile(unit)
	for _, want := range []string{app, boot, p.PublicURL} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
}
