package node

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mirrornet/mirrornet/internal/datadir"
)

// realConfig is a node on a real loopback host (its identity comes from
// the data directory), with nothing else listening.
func realConfig(t *testing.T, dir string) Config {
	cfg := testConfig(t)
	cfg.DataDir = dir
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	return cfg
}

// A second node on the same data directory refuses to start, even when the
// first one's admin socket was deleted; the admin socket is owner-only.
func TestDataDirLockRefusesSecondNode(t *testing.T) {
	dir := t.TempDir()
	a, err := New(realConfig(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	fi, err := os.Stat(filepath.Join(dir, adminSocket))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("admin socket mode %04o, want 0600", perm)
	}
	if err := os.Remove(filepath.Join(dir, adminSocket)); err != nil {
		t.Fatal(err)
	}
	b, err := New(realConfig(t, dir))
	if err == nil {
		b.Close()
		t.Fatal("a second node started on a data directory in use")
	}
	if !errors.Is(err, datadir.ErrLocked) || strings.Count(err.Error(), "\n") > 0 {
		t.Fatalf("second node: %v, want one line with ErrLocked", err)
	}
	// Once the first node is gone, the directory is free again.
	a.Close()
	c, err := New(realConfig(t, dir))
	if err != nil {
		t.Fatalf("after the first node closed: %v", err)
	}
	c.Close()
}

// An identity key that parses but is not this node's stops the node with
// one clear line: a key whose peer ID is not the one node.json recorded,
// and a key that fails the sign/verify self-test.
func TestIdentityNotThisNodesStops(t *testing.T) {
	dir := t.TempDir()
	a, err := New(realConfig(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	id := a.ID()
	a.Close()

	keyPath := filepath.Join(dir, identityFile)
	good, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := crypto.GenerateEd25519Key(nil)
	raw, _ := crypto.MarshalPrivateKey(other)
	if err := os.WriteFile(keyPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = New(realConfig(t, dir))
	if !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), id.String()) || !strings.Contains(err.Error(), nodeInfoFile) {
		t.Fatalf("foreign key: %v, want ErrIdentity naming %s and %s", err, id, nodeInfoFile)
	}

	// The node's own seed with a wrong public half: it parses, but signs
	// nothing anyone can verify.
	key, err := crypto.UnmarshalPrivateKey(good)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := key.Raw()
	broken := ed25519.PrivateKey(append([]byte(nil), b...))
	broken[63] ^= 0xff
	bad, err := crypto.UnmarshalEd25519PrivateKey(broken)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ = crypto.MarshalPrivateKey(bad)
	if err := os.WriteFile(keyPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = New(realConfig(t, dir))
	if !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), "self-test") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("broken key: %v, want one line: ErrIdentity, self-test", err)
	}

	// The right key starts again.
	if err := os.WriteFile(keyPath, good, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(realConfig(t, dir))
	if err != nil {
		t.Fatalf("own key: %v", err)
	}
	c.Close()
}
