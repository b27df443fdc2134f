package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// writeTree writes a small app: a page, a script, and a file of several
// chunks.
func writeTree(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	big := make([]byte, 3<<20+12345)
	for i := range big {
		big[i] = byte(i * 7 % 251)
	}
	files := map[string][]byte{
		"index.html":     []byte("<!doctype html><title>app</title><script src=app.js></script>"),
		"app.js":         []byte("console.log('mirrornet')"),
		"assets/big.bin": big,
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func publish(t testing.TB, n *Node, dir string) ImportResult {
	t.Helper()
	ac, err := DialAdmin(n.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := ac.Import(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func holds(n *Node, c cid.Cid) (bool, string) {
	for _, b := range n.Bundles() {
		if b.CID == c.String() {
			return b.State == "held", fmt.Sprintf("%s: %s %d bytes %s", n.ID().ShortString(), b.State, b.Bytes, b.Error)
		}
	}
	return false, n.ID().ShortString() + " does not follow it"
}

// announces reports whether every node in obs sees holder listing c.
func announces(obs []*Node, holder *Node, c cid.Cid) (bool, string) {
	for _, o := range obs {
		now := o.clock()
		o.mu.Lock()
		m, ok := o.view.Mirror(holder.ID(), now)
		o.mu.Unlock()
		if !ok || m.Liveness == nil {
			return false, "unknown"
		}
		found := false
		for _, b := range m.Liveness.Bundles {
			found = found || b == c.String()
		}
		if !found {
			return false, fmt.Sprintf("%s does not yet see %s hold it", o.ID().ShortString(), holder.ID().ShortString())
		}
	}
	return true, ""
}

func TestPublishFollowReplicate(t *testing.T) {
	c := newCluster(t, 3)
	c.connectRing(1)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	waitFor(t, 20*time.Second, "all alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })

	res := publish(t, a, writeTree(t))
	root, err := cid.Decode(res.CID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Blocks < 5 || res.Size < 3<<20 {
		t.Fatalf("publish result %+v: want the blocks and bytes of the bundle", res)
	}
	waitFor(t, 10*time.Second, "A announces the bundle", func() (bool, string) { return announces(c.nodes, a, root) })

	for _, n := range []*Node{b, cc} {
		if err := n.Follow(root); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []*Node{b, cc} {
		waitFor(t, 30*time.Second, "follower holds the bundle", func() (bool, string) { return holds(n, root) })
		waitFor(t, 10*time.Second, "follower announces the bundle", func() (bool, string) { return announces(c.nodes, n, root) })
	}

	// Stop A; a new follower fetches from B (and C).
	a.Close()
	a.host.Close()
	d := c.add()
	c.connect(d, b)
	c.connect(d, cc)
	waitFor(t, 10*time.Second, "D learns B holds it", func() (bool, string) { return announces([]*Node{d}, b, root) })
	if err := d.Follow(root); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "D holds the bundle without A", func() (bool, string) { return holds(d, root) })
}
