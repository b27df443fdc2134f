package node

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
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

// addServing adds a node to c with its HTTP side on loopback (in memory
// in a synctest bubble), logging to log.
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
	nd, err := New(cfg, WithHost(h, sk), WithLogger(log), func(o *options) {
		if inABubble(c.t) {
			o.listenAdmin, o.listenHTTP, o.httpTransport = listenMem, memHTTP.listen, memHTTP.transport()
		}
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes = append(c.nodes, nd)
	return nd
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, done := transportFor(req.URL.Host)
	defer done()
	resp, err := (&http.Client{Transport: tr}).Do(req)
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

// damageBlock overwrites the start of block c's bytes in the store's pack
// file in place, as bit rot would, and returns that file.
func damageBlock(t *testing.T, nd *Node, c cid.Cid, with []byte) string {
	t.Helper()
	p, off, _, err := nd.store.Locate(c)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(with, off); err != nil {
		t.Fatal(err)
	}
	return p
}

// A mirror that finds a block corrupt while serving logs it (CID and file),
// counts it in /metrics, drops it and fetches it again from a healthy peer
// at once: it serves the bundle again within 5 s, not at the next scrub
// hours later. The test runs in a synctest bubble (libp2p in memory, HTTP
// in memory), so the 5 s are virtual time: only the node's own timers and
// waits move it, not how fast a loaded machine hashes and copies.
func TestCorruptBlockRepairedFromPeer(t *testing.T) {
	inBubble(t, testCorruptBlockRepairedFromPeer)
}

func testCorruptBlockRepairedFromPeer(t *testing.T) {
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
	p := damageBlock(t, a, leaf, bytes.Repeat([]byte("rot"), 1000))

	// Serving it finds the corruption.
	if code, _ := httpGet(t, a.HTTPURL()+"/ipfs/"+leaf.String()+"?format=raw"); code == http.StatusOK {
		t.Fatal("A served a corrupt block")
	}
	took := waitFor(t, 5*time.Second, "A serves the whole bundle again", func() (bool, string) {
		if ok, why := holds(a, root); !ok {
			return false, why
		}
		code, body := httpGet(t, a.HTTPURL()+"/ipfs/"+root.String()+"?format=car&dag-scope=all")
		if code != http.StatusOK || len(body) < 3<<20 {
			return false, fmt.Sprintf("CAR: status %d, %d bytes", code, len(body))
		}
		return true, ""
	})
	t.Logf("A serves the bundle again %v (virtual time) after finding the block corrupt", took)
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
