package node

import (
	"bytes"
	"encoding/base32"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mirrornet/mirrornet/internal/bundle"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// addServing adds a node to c with its HTTP side on loopback, logging to
// log.
func (c *cluster) addServing(log *slog.Logger) *Node {
	c.t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		c.t.Fatal(err)
	}
	addr, _ := ma.NewMultiaddr(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 10000+len(c.nodes)))
	h, err := c.mn.AddPeer(sk, addr)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.mn.LinkAll(); err != nil {
		c.t.Fatal(err)
	}
	cfg := testConfig(c.t)
	cfg.HTTPAddr = "127.0.0.1:0"
	nd, err := New(cfg, WithHost(h, sk), WithLogger(log))
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes = append(c.nodes, nd)
	return nd
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil
	}
	return resp.StatusCode, body
}

// blockFile finds the file holding block c under dir.
func blockFile(t *testing.T, dir string, c cid.Cid) string {
	t.Helper()
	name := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(c.Hash())
	var found string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == name {
			found = p
		}
		return nil
	})
	if found == "" {
		t.Fatalf("no file for block %s under %s", c, dir)
	}
	return found
}

// A mirror that finds a block corrupt while serving logs it (CID and file),
// counts it in /metrics, drops it and fetches it again from a healthy peer
// at once: it serves the bundle again within seconds, not at the next
// scrub hours later.
func TestCorruptBlockRepairedFromPeer(t *testing.T) {
	c := newCluster(t, 0)
	logs := &syncBuffer{}
	a := c.addServing(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	b := c.add()
	c.connect(a, b)
	waitFor(t, 20*time.Second, "both alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })

	res := publish(t, a, writeTree(t))
	root, _ := cid.Decode(res.CID)
	if err := b.Follow(root); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "B holds the bundle", func() (bool, string) { return holds(b, root) })
	waitFor(t, 10*time.Second, "A sees B hold it", func() (bool, string) { return announces([]*Node{a}, b, root) })

	// A leaf of the big file, replaced on A's disk by other bytes.
	var leaf cid.Cid
	err := bundle.Walk(t.Context(), root, a.store.Get, func(c cid.Cid, data []byte) error {
		if c.Type() == cid.Raw && len(data) == 1<<20 {
			leaf = c
		}
		return nil
	})
	if err != nil || !leaf.Defined() {
		t.Fatalf("no 1 MiB leaf in the bundle: %v", err)
	}
	p := blockFile(t, a.cfg.DataDir, leaf)
	if err := os.WriteFile(p+".new", bytes.Repeat([]byte("rot"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p+".new", p); err != nil {
		t.Fatal(err)
	}

	// Serving it finds the corruption.
	if code, _ := httpGet(t, a.HTTPURL()+"/ipfs/"+leaf.String()+"?format=raw"); code == http.StatusOK {
		t.Fatal("A served a corrupt block")
	}
	waitFor(t, 5*time.Second, "A serves the whole bundle again", func() (bool, string) {
		if ok, why := holds(a, root); !ok {
			return false, why
		}
		code, body := httpGet(t, a.HTTPURL()+"/ipfs/"+root.String()+"?format=car&dag-scope=all")
		if code != http.StatusOK || len(body) < 3<<20 {
			return false, fmt.Sprintf("CAR: status %d, %d bytes", code, len(body))
		}
		return true, ""
	})
	code, got := httpGet(t, a.HTTPURL()+"/ipfs/"+leaf.String()+"?format=raw")
	if sum, err := leaf.Prefix().Sum(got); code != http.StatusOK || err != nil || !sum.Equals(leaf) {
		t.Fatalf("repaired block: status %d, %d bytes, wrong bytes", code, len(got))
	}

	line := ""
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, leaf.String()) && strings.Contains(l, p) {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no warning naming the block %s and its file %s; log:\n%s", leaf, p, logs.String())
	}
	_, metrics := httpGet(t, a.HTTPURL()+"/metrics")
	if !strings.Contains(string(metrics), `mirrornet_store_corrupt_blocks_total{found_by="read"} 1`) {
		t.Fatalf("corruption not counted in /metrics:\n%s", grepLines(string(metrics), "corrupt"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
