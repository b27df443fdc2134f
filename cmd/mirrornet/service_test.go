package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// `service install` writes a unit whose settings a mirror accepts: the
// Environment= lines, read back as MIRRORNET_* variables, make a valid
// node configuration.
func TestServiceInstallWritesAValidUnit(t *testing.T) {
	dir := t.TempDir()
	unit := filepath.Join(dir, "mirrornet.service")
	app := "app-bo3yt5ha7jqo6xfbhtc3z4rw6v4m3j2jmo7aoaoamtgtpvqfhwuuq"
	boot := "/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWSUv8bhHRsKEPAfH3qqkdLSao9h33AmcNXWf6M2JYejz4"
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"service", "install", "--follow", app, "--bootstrap", boot,
		"--public-url", "https://mirror.example.org", "--data", filepath.Join(dir, "data"), "--unit", unit, "--binary", "/usr/local/bin/mirrornet"},
		func(string) string { return "" }, &out, &errb)
	if err != nil {
		t.Fatalf("service install: %v (%s)", err, errb.String())
	}
	if !strings.Contains(out.String(), "systemctl daemon-reload && systemctl enable --now mirrornet") {
		t.Errorf("no next step printed: %q", out.String())
	}
	raw, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		v, ok := strings.CutPrefix(line, "Environment=")
		if !ok {
			continue
		}
		if strings.HasPrefix(v, `"`) {
			if v, err = strconv.Unquote(v); err != nil {
				t.Fatal(err)
			}
		}
		k, val, _ := strings.Cut(v, "=")
		vars[k] = val
	}
	if vars["MIRRORNET_FOLLOW"] != app || vars["MIRRORNET_BOOTSTRAP"] != boot || vars["MIRRORNET_PUBLIC_URL"] != "https://mirror.example.org" {
		t.Errorf("unit settings: %v", vars)
	}
	cfg, _, err := nodeConfig(&cmdEnv{getenv: func(k string) string { return vars[k] }, stdout: &out, stderr: &errb}, nil)
	if err != nil {
		t.Fatalf("a mirror refuses the unit's settings: %v", err)
	}
	if cfg.PublicURL != "https://mirror.example.org" || len(cfg.Bootstrap) != 1 || cfg.HTTPAddr != "0.0.0.0:8080" {
		t.Errorf("config from the unit: public %q bootstrap %v http %q", cfg.PublicURL, cfg.Bootstrap, cfg.HTTPAddr)
	}

	// Bad input: one line, nothing written.
	for _, args := range [][]string{
		{"service", "install", "--public-url", "ftp://x", "--unit", unit + ".2"},
		{"service", "install", "--bootstrap", "/ip4/1.2.3.4/tcp/1", "--unit", unit + ".2"},
		{"service", "uninstall"},
	} {
		err := run(context.Background(), args, func(string) string { return "" }, &out, &errb)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	if _, err := os.Stat(unit + ".2"); err == nil {
		t.Error("a refused install wrote a unit")
	}
}
