package client

import (
	"bytes"
	"context"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/mirrornet/mirrornet/protocol"
)

// FuzzReadOneBlockCAR: whatever a mirror sends, the CAR reader never
// panics and returns bytes only when they are exactly the wanted block.
func FuzzReadOneBlockCAR(f *testing.F) {
	want := []byte("the one block")
	c, err := cid.Prefix{Version: 1, Codec: cid.DagProtobuf, MhType: mh.SHA2_256, MhLength: -1}.Sum(want)
	if err != nil {
		f.Fatal(err)
	}
	other, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum([]byte("other"))
	m := &fakeMirror{b: &bundle{blocks: map[cid.Cid][]byte{c: want, other: []byte("other")}, cids: []cid.Cid{c, other}}}
	f.Add(m.car([]cid.Cid{c}, []cid.Cid{c}))
	f.Add(m.car([]cid.Cid{c}, []cid.Cid{c, other}))
	f.Add(m.car([]cid.Cid{other}, []cid.Cid{c}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := readOneBlockCAR(context.Background(), bytes.NewReader(body), c)
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("accepted %q", got)
		}
	})
}

// FuzzReadStatements: the statement stream reader is bounded and never
// panics.
func FuzzReadStatements(f *testing.F) {
	var buf bytes.Buffer
	protocol.WriteFrame(&buf, []byte("a statement"))
	protocol.WriteFrame(&buf, nil)
	f.Add(buf.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, body []byte) {
		var out [][]byte
		readStatements(bytes.NewReader(body), 1<<20, collect(&out))
		n := 0
		for _, s := range out {
			n += len(s)
		}
		if n > len(body) {
			t.Fatalf("%d statement bytes from %d input bytes", n, len(body))
		}
	})
}

// FuzzReadSubtreeCAR: the subtree reader never panics and every block it
// returns is the next block of the subtree in traversal order, verified.
func FuzzReadSubtreeCAR(f *testing.F) {
	b := buildBundle(f, map[string][]byte{"a": []byte("aa"), "b": []byte("bbb"), "c/d": []byte("dddd")})
	m := &fakeMirror{b: b}
	order := b.dfs(b.root)
	f.Add(m.car([]cid.Cid{b.root}, order))
	f.Add(m.car([]cid.Cid{b.root}, order[:2]))
	f.Fuzz(func(t *testing.T, body []byte) {
		blks, _ := readSubtreeCAR(context.Background(), bytes.NewReader(body), b.root, 1<<16)
		if len(blks) > len(order) {
			t.Fatalf("%d blocks from a %d-block subtree", len(blks), len(order))
		}
		for i, blk := range blks {
			if !blk.c.Equals(order[i]) || !bytes.Equal(blk.data, b.blocks[blk.c]) {
				t.Fatalf("block %d is not %s", i, order[i])
			}
		}
	})
}
