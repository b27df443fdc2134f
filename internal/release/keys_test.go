package release

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
)

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "publisher.key")
	pub, err := GenerateKeyFile(path, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o", st.Mode().Perm())
	}
	key, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := PublicKey(key); got != pub || !strings.HasPrefix(pub, "12D3KooW") {
		t.Fatalf("public key %q, printed %q", got, pub)
	}
	before, _ := os.ReadFile(path)
	if _, err := GenerateKeyFile(path, rand.Reader); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("overwrite: %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("existing key changed")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

func TestLoadKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.key")
	if _, err := GenerateKeyFile(good, rand.Reader); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open.key")
	b, _ := os.ReadFile(good)
	os.WriteFile(open, b, 0o644)
	os.Chmod(open, 0o644)
	groupOnly := filepath.Join(dir, "group.key")
	os.WriteFile(groupOnly, b, 0o640)
	os.Chmod(groupOnly, 0o640)
	corrupt := filepath.Join(dir, "corrupt.key")
	os.WriteFile(corrupt, []byte("not a key\n"), 0o600)
	rsaish := filepath.Join(dir, "secp.key")
	k, _, _ := crypto.GenerateSecp256k1Key(rand.Reader)
	kb, _ := crypto.MarshalPrivateKey(k)
	os.WriteFile(rsaish, kb, 0o600)

	for _, c := range []struct {
		path, want string
		err        error
	}{
		{filepath.Join(dir, "missing.key"), "missing.key", ErrKeyMissing},
		{open, "mode 0644", ErrKeyMode},
		{groupOnly, "mode 0640", ErrKeyMode},
		{corrupt, "corrupt.key", ErrKeyCorrupt},
		{rsaish, "Secp256k1", ErrKeyCorrupt},
		{dir, dir, ErrKeyCorrupt},
	} {
		_, err := LoadKeyFile(c.path)
		if !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want %v", c.path, err, c.err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
			t.Errorf("%s: message %q should be one line naming %q", c.path, msg, c.want)
		}
	}
}

func TestBuildFromKeyFiles(t *testing.T) {
	dir := t.TempDir()
	var files, pubs []string
	for _, n := range []string{"a.key", "b.key"} {
		f := filepath.Join(dir, n)
		pub, err := GenerateKeyFile(f, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		files, pubs = append(files, f), append(pubs, pub)
	}
	p := Params{Name: "demo", Version: 1, CID: cid1, Maintainers: MaintainerSetOf(2, pubs[1], pubs[0]), Time: t0}
	half, err := Build(p, files[0])
	if err != nil {
		t.Fatal(err)
	}
	full, err := Cosign(half, files[1])
	if err != nil {
		t.Fatal(err)
	}
	b := NewBook()
	rel, err := verifyAndApply(b, full)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Record.Expires != t0.Add(DefaultTTL).UnixMilli() {
		t.Fatal("default ttl not applied")
	}
	if _, err := Build(p, filepath.Join(dir, "nope.key")); !errors.Is(err, ErrKeyMissing) {
		t.Fatalf("missing key file: %v", err)
	}
	bad := p
	bad.Maintainers = MaintainerSetOf(1, "not-a-key")
	if _, err := Build(bad, files[0]); !errors.Is(err, ErrParams) {
		t.Fatalf("bad maintainer key: %v", err)
	}
	next := NextParams(rel.Record, cid2, t0.Add(1))
	raw, err := Build(next, files...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifyAndApply(b, raw); err != nil {
		t.Fatalf("next release: %v", err)
	}
}
