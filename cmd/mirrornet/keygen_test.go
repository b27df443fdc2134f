package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mirrornet/mirrornet/internal/release"
)

func runInProcess(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, func(string) string { return "" }, &out, &errb)
	return out.String(), errb.String(), err
}

func TestKeygen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pub.key")
	out, _, err := runInProcess(t, "keygen", path)
	if err != nil {
		t.Fatal(err)
	}
	pub := strings.TrimSpace(out)
	key, err := release.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := release.PublicKey(key); got != pub {
		t.Fatalf("printed %q, key is %q", pub, got)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o", st.Mode().Perm())
	}
	_, _, err = runInProcess(t, "keygen", path)
	if !errors.Is(err, release.ErrKeyExists) || exitCode(err) != 1 {
		t.Fatalf("second keygen: %v", err)
	}
	// The error names the command the user ran, not an internal package.
	if !strings.HasPrefix(err.Error(), "keygen: key file already exists") {
		t.Errorf("second keygen says %q", err)
	}
	loose := filepath.Join(t.TempDir(), "loose.key")
	if err := os.WriteFile(loose, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = runInProcess(t, "verify", "--source", t.TempDir(), "--build", "true", "--out", ".", "--key", loose, "--expect", "bafkqaaa")
	if err == nil || !strings.HasPrefix(err.Error(), "verify: ") || strings.Contains(err.Error(), "release:") {
		t.Errorf("verify with a bad key file says %q", err)
	}
	if _, _, err := runInProcess(t, "keygen"); exitCode(err) != 2 {
		t.Fatalf("no FILE: %v (exit %d)", err, exitCode(err))
	}
}
