package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/internal/bundle"
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
	res, err := adminClient(t, n).Import(context.Background(), dir, nil)
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
		for _, b := range m.Bundles {
			found = found || b == c.String()
		}
		if !found {
			return false, fmt.Sprintf("%s does not yet see %s hold it", o.ID().ShortString(), holder.ID().ShortString())
		}
	}
	return true, ""
}

func TestPublishFollowReplicate(t *testing.T) { inBubble(t, testPublishFollowReplicate) }

func testPublishFollowReplicate(t *testing.T) {
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

// A mirror that follows an app before it is published (as compose's
// mirrors do) gets it as soon as it is published, not when bitswap next
// re-sends its wantlist.
func TestFollowBeforePublish(t *testing.T) { inBubble(t, testFollowBeforePublish) }

func testFollowBeforePublish(t *testing.T) {
	c := newCluster(t, 2)
	c.connectRing(1)
	a, b := c.nodes[0], c.nodes[1]
	waitFor(t, 20*time.Second, "all alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })
	dir := writeTree(t)
	offline, err := bundle.Import(context.Background(), dir, func(blocks.Block) error { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Follow(offline.Root); err != nil {
		t.Fatal(err)
	}
	// B's fetch asks its peers (A) before A has the bundle.
	waitFor(t, 10*time.Second, "A has B's want for the root", func() (bool, string) {
		for _, w := range a.repl.WantedBy(b.ID()) {
			if w.Equals(offline.Root) {
				return true, ""
			}
		}
		return false, "no want yet"
	})
	// From here B's bitswap sends nothing new for the root until it re-sends
	// its wantlist, which it does only for wants sent at least
	// bitswapResend ago. So B holding the bundle sooner than that after its
	// want reached A means A's publish answered the want by itself. The
	// test runs in virtual time, so the publish and the transfer take no
	// time at all however busy the machine; the margin only covers the
	// virtual time the want may have waited at A before the poll saw it.
	deadline := bitswapResend - 5*time.Second
	wanted := time.Now()
	publish(t, a, dir)
	waitFor(t, deadline-time.Since(wanted), "B holds the bundle before its wantlist is re-sent", func() (bool, string) { return holds(b, offline.Root) })
}

// bitswapResend is how old a want must be before boxo's bitswap client
// re-sends it to a peer (rebroadcastInterval in
// boxo/bitswap/client/internal/messagequeue, not configurable).
const bitswapResend = 30 * time.Second
