package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// TestGetSendsReceipts: after a fetch from two mirrors that announced
// themselves in signed liveness statements, the client signs one receipt
// per mirror (its peer ID, the root, the verified bytes it delivered) with
// the key it keeps on disk, and posts the batch to both mirrors, so each
// receipt reaches a witness other than the mirror it credits.
func TestGetSendsReceipts(t *testing.T) { inBubble(t, testGetSendsReceipts) }

func testGetSendsReceipts(t *testing.T) {
	b := smallBundle(t)
	now := time.Now()
	root := b.root.String()
	a, c := newFakeMirror(t, b, honest), newFakeMirror(t, b, honest)
	ka, kc := newKey(t), newKey(t)
	ida, _ := peer.IDFromPrivateKey(ka)
	idc, _ := peer.IDFromPrivateKey(kc)
	sa, sc := signed(t, ka, 1, now, protocol.StateUp, a.URL, root), signed(t, kc, 1, now, protocol.StateUp, c.URL, root)
	a.statements, c.statements = [][]byte{sa, sc}, [][]byte{sa, sc}
	var mu sync.Mutex
	posts := map[string][][]byte{}
	for _, m := range []*fakeMirror{a, c} {
		m.receipts = func(body []byte) {
			var rs [][]byte
			br := bufio.NewReader(bytes.NewReader(body))
			for {
				f, err := protocol.ReadFrame(br, protocol.MaxReceiptSize)
				if err != nil || len(f) == 0 {
					break
				}
				rs = append(rs, f)
			}
			mu.Lock()
			posts[m.URL] = rs
			mu.Unlock()
		}
	}
	o := testOptions(t, a.URL, c.URL)
	res, err := Get(context.Background(), b.root, o)
	if err != nil {
		t.Fatal(err)
	}
	// Discovery may not have read every statement before a small bundle
	// was done: the client then asks the mirrors that delivered. Forget
	// the peer ID of a mirror that delivered to take that path (which
	// mirrors deliver a small bundle is a race: one may send it all).
	forgot := false
	for u, n := range res.PerMirror {
		if n > 0 {
			delete(res.Peers, u)
			forgot = true
			break
		}
	}
	if !forgot {
		t.Fatalf("no mirror delivered: %v", res.PerMirror)
	}
	keyPath := filepath.Join(t.TempDir(), "client.key")
	key, err := LoadClientKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	cid, _ := peer.IDFromPrivateKey(key)
	rep, err := SendReceipts(context.Background(), res, ReceiptOptions{Key: key, HTTPClient: o.HTTPClient})
	if err != nil {
		t.Fatal(err)
	}
	if res.Peers[a.URL] != ida.String() || res.Peers[c.URL] != idc.String() {
		t.Fatalf("peers by URL %v", res.Peers)
	}
	if len(rep.Witnesses) != 2 || len(posts) != 2 {
		t.Fatalf("receipts posted to %v (%d mirrors got them), refused %v", rep.Witnesses, len(posts), rep.Refused)
	}
	credited := map[string]uint64{}
	for _, raw := range posts[a.URL] {
		st, err := attest.Verify(raw, time.Now())
		if err != nil || st.Kind != attest.KindReceipt {
			t.Fatalf("posted receipt: %v", err)
		}
		r := st.Receipt
		if r.Client != cid.String() || r.CID != root {
			t.Fatalf("receipt %+v", r)
		}
		credited[r.Mirror] += r.Bytes
	}
	want := map[string]uint64{}
	for u, n := range res.PerMirror {
		want[res.Peers[u]] += uint64(n)
	}
	if len(credited) == 0 || len(credited) != len(want) {
		t.Fatalf("credited %v, delivered %v", credited, want)
	}
	for id, n := range want {
		if credited[id] != n {
			t.Fatalf("credited %v, delivered %v", credited, want)
		}
	}
	if !bytes.Equal(bytes.Join(posts[a.URL], nil), bytes.Join(posts[c.URL], nil)) {
		t.Fatal("the mirrors got different batches")
	}
	// The key is kept: a second run signs as the same client.
	if k2, err := LoadClientKey(keyPath); err != nil || !k2.Equals(key) {
		t.Fatalf("second run's key: %v", err)
	}
}

// A mirror URL that two peers claim credits neither; a key file that is
// not a key is an error, not a new identity.
func TestReceiptsRefuseAmbiguityAndBadKeys(t *testing.T) {
	now := time.Now()
	v := newHealthView(0)
	k1, k2, k3 := newKey(t), newKey(t), newKey(t)
	v.add("a", signed(t, k1, 1, now, protocol.StateUp, "http://m1", "r"), now)
	v.add("a", signed(t, k2, 1, now, protocol.StateUp, "http://m1", "r"), now)
	v.add("a", signed(t, k3, 1, now, protocol.StateUp, "http://m3", "r"), now)
	peers := v.peersByURL(now, time.Minute)
	id3, _ := peer.IDFromPrivateKey(k3)
	if len(peers) != 1 || peers["http://m3"] != id3.String() {
		t.Fatalf("peers %v", peers)
	}
	path := filepath.Join(t.TempDir(), "client.key")
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadClientKey(path); err == nil {
		t.Fatal("a corrupt key file was accepted")
	}
	// Nothing delivered: nothing to sign, nothing sent.
	key, err := LoadClientKey(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := SendReceipts(context.Background(), &Result{PerMirror: map[string]int64{}}, ReceiptOptions{Key: key})
	if err != nil || len(rep.Receipts) != 0 {
		t.Fatalf("empty result: %v %v", rep, err)
	}
	if _, err := SendReceipts(context.Background(), &Result{}, ReceiptOptions{}); !errors.Is(err, ErrOptions) {
		t.Fatalf("no key: %v", err)
	}
}
