package client

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/mirrornet/mirrornet/internal/gateway"
)

// gatewayMirror serves b from the mirror's real gateway (boxo underneath).
func gatewayMirror(t *testing.T, b *bundle) string {
	t.Helper()
	bs := blockstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
	for c, data := range b.blocks {
		blk, err := blocks.NewBlockWithCid(data, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := bs.Put(context.Background(), blk); err != nil {
			t.Fatal(err)
		}
	}
	held := func(c cid.Cid) bool { return c.Equals(b.root) }
	heldBlock := func(c cid.Cid) bool { _, ok := b.blocks[c]; return ok }
	gw, err := gateway.New(gateway.DefaultConfig(), bs, held, gateway.WithHeldBlock(heldBlock))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler(http.NotFoundHandler()))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestAgainstGateway: the client speaks the same protocol as the mirrors'
// gateway: HEAD only-if-cached, one-block CARs, raw blocks and Range
// resumption.
func TestAgainstGateway(t *testing.T) {
	b := smallBundle(t)
	u := gatewayMirror(t, b)
	res, err := Get(context.Background(), b.root, testOptions(t, u))
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, b, res)
	if res.Requests >= res.Blocks {
		t.Errorf("%d requests for %d blocks: the lib/ subtree did not come in one CAR", res.Requests, res.Blocks)
	}

	var leaf cid.Cid
	for c, d := range b.blocks {
		if c.Type() == cid.Raw && len(d) == 1<<20 {
			leaf = c
		}
	}
	var n atomic.Int64
	r := fetchBlock(context.Background(), http.DefaultClient, u, leaf, b.blocks[leaf][:1000], 0, &n)
	if r.err != nil || r.usedPre != 1000 || !bytes.Equal(r.data, b.blocks[leaf]) {
		t.Fatalf("resume with Range: err %v, usedPre %d", r.err, r.usedPre)
	}
	if n.Load() != int64(len(b.blocks[leaf])-1000) {
		t.Fatalf("resume read %d bytes, want %d", n.Load(), len(b.blocks[leaf])-1000)
	}

	// A root the gateway does not hold: the probe's 412 drops it.
	other := buildBundle(t, map[string][]byte{"x": []byte("not held")})
	_, err = Get(context.Background(), other.root, testOptions(t, u))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("HTTP 412")) {
		t.Fatalf("unheld root: %v", err)
	}
}
