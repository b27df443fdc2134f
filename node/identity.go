package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mirrornet/mirrornet/internal/atomicfile"
)

// Files in the data directory.
const (
	identityFile = "identity.key"
	nodeInfoFile = "node.json"
	adminSocket  = "admin.sock"
	blocksDir    = "blocks"
)

// ErrIdentity reports an unusable identity key file.
var ErrIdentity = errors.New("node: identity key")

// loadOrCreateIdentity reads DATA/identity.key, or creates a new Ed25519
// key there (mode 0600) on first start. A corrupt or foreign key file is an
// error and is never replaced.
func loadOrCreateIdentity(dataDir string) (crypto.PrivKey, bool, error) {
	path := filepath.Join(dataDir, identityFile)
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, err := crypto.UnmarshalPrivateKey(raw)
		if err != nil {
			return nil, false, fmt.Errorf("%w: %s is corrupt (%v); move it away to create a new identity, or restore it from a backup", ErrIdentity, path, err)
		}
		if key.Type() != crypto.Ed25519 {
			return nil, false, fmt.Errorf("%w: %s holds a %s key, want Ed25519", ErrIdentity, path, key.Type())
		}
		return key, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, fmt.Errorf("%w: read %s: %v", ErrIdentity, path, err)
	}
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		return nil, false, fmt.Errorf("%w: generate: %v", ErrIdentity, err)
	}
	raw, err = crypto.MarshalPrivateKey(key)
	if err != nil {
		return nil, false, fmt.Errorf("%w: marshal: %v", ErrIdentity, err)
	}
	if err := atomicfile.WriteFile(path, raw, 0o600); err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	return key, true, nil
}

// checkDataDir creates the data directory if needed and proves it is
// writable before anything starts.
func checkDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("node: data directory %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("node: data directory %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// Info is what DATA/node.json holds, for scripts that bootstrap others.
type Info struct {
	PeerID string   `json:"peer_id"`
	Addrs  []string `json:"addrs"`
	HTTP   string   `json:"http"`
}

// ReadInfo reads DATA/node.json.
func ReadInfo(dataDir string) (Info, error) {
	var info Info
	raw, err := os.ReadFile(filepath.Join(dataDir, nodeInfoFile))
	if err != nil {
		return info, err
	}
	err = json.Unmarshal(raw, &info)
	return info, err
}
