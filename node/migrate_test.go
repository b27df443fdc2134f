package node

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/libp2p/go-libp2p/core/crypto"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/store"
	"github.com/mirrornet/mirrornet/internal/store/layout1"
)

// startOn starts a node with its HTTP side on loopback on cfg's data
// directory.
func startOn(t *testing.T, cfg Config) (*Node, error) {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := ma.NewMultiaddr("/ip4/127.0.0.1/tcp/10000")
	h, err := mn.AddPeer(sk, addr)
	if err != nil {
		t.Fatal(err)
	}
	nd, err := New(cfg, WithHost(h, sk))
	if err == nil {
		t.Cleanup(func() { nd.Close() })
	}
	return nd, err
}

// A data directory written by the file-per-block store (layout 1) opens
// with the pack store on the node's first start, and the node serves every
// bundle it held, verified block by block over its gateway.
func TestDataDirMigratedOnStart(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTPAddr = "127.0.0.1:0"
	old, err := layout1.Open(filepath.Join(cfg.DataDir, blocksDir), layout1.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var roots []bundle.Result
	for _, tree := range []string{writeTree(t), makeSmallTree(t)} {
		res, err := bundle.Import(t.Context(), tree, func(b blocks.Block) error { return old.Put(b.Cid(), b.RawData()) }, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := old.MarkHeld(res.Root); err != nil {
			t.Fatal(err)
		}
		roots = append(roots, res)
	}
	old.Close()

	nd, err := startOn(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range roots {
		if !nd.store.Held(res.Root) {
			t.Fatalf("bundle %s not held after the migration", res.Root)
		}
		code, body := httpGet(t, nd.HTTPURL()+"/ipfs/"+res.Root.String()+"?format=car&dag-scope=all")
		if code != http.StatusOK {
			t.Fatalf("CAR of %s: status %d", res.Root, code)
		}
		br, err := carv2.NewBlockReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			blk, err := br.Next()
			if err != nil {
				break
			}
			if sum, err := blk.Cid().Prefix().Sum(blk.RawData()); err != nil || !sum.Equals(blk.Cid()) {
				t.Fatalf("block %s of the CAR does not match its CID", blk.Cid())
			}
			n++
		}
		if n != res.Blocks {
			t.Fatalf("CAR of %s has %d blocks, want %d", res.Root, n, res.Blocks)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, blocksDir, "blocks")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old block files left: %v", err)
	}
}

func makeSmallTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.txt", i)), bytes.Repeat([]byte{byte(i)}, 1000+i*300), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A block store written by a newer mirrornet stops the node with one line
// saying so, and the store is left as it was.
func TestNewerStoreStopsNode(t *testing.T) {
	cfg := testConfig(t)
	dir := filepath.Join(cfg.DataDir, blocksDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "store-version"), []byte("3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := startOn(t, cfg)
	if !errors.Is(err, store.ErrNewerVersion) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "upgrade mirrornet") {
		t.Fatalf("starting on a newer store: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("the refused store was changed: %d entries", len(entries))
	}
}
