package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

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

// checkIdentity proves that key is this node's identity before anything
// is signed with it: it must sign and verify a test message (a key file
// whose public half does not match its private half parses, but every
// statement it signs would be rejected by every peer), and its peer ID
// must be the one DATA/node.json recorded, if any (a key file copied from
// another node, or restored from the wrong backup, would make this mirror
// impersonate another or lose its own history).
func checkIdentity(dataDir string, key crypto.PrivKey) (err error) {
	path := filepath.Join(dataDir, identityFile)
	defer func() {
		// crypto/ed25519 panics on a private key whose halves disagree.
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s fails the sign/verify self-test (%v); restore the right key from a backup", ErrIdentity, path, r)
		}
	}()
	msg := []byte("mirrornet identity self-test")
	sig, err := key.Sign(msg)
	if err != nil {
		return fmt.Errorf("%w: %s cannot sign (%v); restore the right key from a backup", ErrIdentity, path, err)
	}
	if ok, err := key.GetPublic().Verify(msg, sig); err != nil || !ok {
		return fmt.Errorf("%w: %s fails the sign/verify self-test: its signature does not verify under its own public key; restore the right key from a backup", ErrIdentity, path)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return fmt.Errorf("%w: %s: peer ID: %v", ErrIdentity, path, err)
	}
	info, err := ReadInfo(dataDir)
	if err != nil || info.PeerID == "" {
		return nil // first start, or no record to compare with
	}
	if info.PeerID != id.String() {
		return fmt.Errorf("%w: %s is the key of %s, but %s says this node is %s; restore the matching key, or remove %s to start as the new identity", ErrIdentity, path, id, nodeInfoFile, info.PeerID, nodeInfoFile)
	}
	return nil
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
