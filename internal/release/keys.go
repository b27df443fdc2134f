package release

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mirrornet/mirrornet/attest"
)

// Key file errors.
var (
	ErrKeyMissing = errors.New("release: key file not found")
	ErrKeyMode    = errors.New("release: key file is accessible to group or others")
	ErrKeyCorrupt = errors.New("release: key file is not an Ed25519 key")
	ErrKeyExists  = errors.New("release: key file already exists")
)

// maxKeyFileSize bounds what LoadKeyFile reads: a marshalled Ed25519 key is
// 68 bytes.
const maxKeyFileSize = 4 << 10

// GenerateKeyFile makes a new Ed25519 key from rand, writes it to path
// (libp2p's marshalled private key, mode 0600) and returns its public key
// string (a peer ID, as used in maintainer sets). It never overwrites: if
// path exists it returns ErrKeyExists. The file appears complete or not at
// all: it is written to a temporary file in the same directory, synced, and
// hard-linked into place.
func GenerateKeyFile(path string, rand io.Reader) (string, error) {
	key, _, err := crypto.GenerateEd25519Key(rand)
	if err != nil {
		return "", fmt.Errorf("release: generate key: %w", err)
	}
	b, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("release: marshal key: %w", err)
	}
	pub, err := attest.KeyString(key.GetPublic())
	if err != nil {
		return "", err
	}
	if _, err := os.Lstat(path); err == nil {
		return "", fmt.Errorf("%w: %s (refusing to overwrite)", ErrKeyExists, path)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".keygen-*")
	if err != nil {
		return "", fmt.Errorf("release: create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("release: create key file: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return "", fmt.Errorf("release: write key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("release: write key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("release: write key file: %w", err)
	}
	// Link fails if path exists, so a racing writer cannot be overwritten.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("%w: %s (refusing to overwrite)", ErrKeyExists, path)
		}
		return "", fmt.Errorf("release: write key file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return pub, nil
}

// LoadKeyFile reads an Ed25519 key written by GenerateKeyFile. It refuses a
// file that group or others can read or write (ErrKeyMode, naming the file
// and its mode), a missing file (ErrKeyMissing) and anything that is not a
// marshalled Ed25519 private key (ErrKeyCorrupt). Each error is one line.
func LoadKeyFile(path string) (crypto.PrivKey, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s (create one with 'mirrornet keygen %s')", ErrKeyMissing, path, path)
		}
		return nil, fmt.Errorf("release: open key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("release: stat key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrKeyCorrupt, path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o (run 'chmod 600 %s')", ErrKeyMode, path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("release: read key file %s: %w", path, err)
	}
	if len(b) > maxKeyFileSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrKeyCorrupt, path, maxKeyFileSize)
	}
	key, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrKeyCorrupt, path)
	}
	if key.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("%w: %s holds a %s key", ErrKeyCorrupt, path, key.Type())
	}
	return key, nil
}

// PublicKey returns the public key string (peer ID) of key.
func PublicKey(key crypto.PrivKey) (string, error) { return attest.KeyString(key.GetPublic()) }
