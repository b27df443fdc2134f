package verify

import (
	"errors"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

func sum(codec uint64, data []byte) cid.Cid {
	c, err := cid.Prefix{Version: 1, Codec: codec, MhType: mh.SHA2_256, MhLength: -1}.Sum(data)
	if err != nil {
		panic(err)
	}
	return c
}

// encodePB encodes a PBNode with the given links (empty names, no Tsize) and
// no Data, by hand.
func encodePB(links ...cid.Cid) []byte {
	var out []byte
	for _, l := range links {
		b := l.Bytes()
		link := append([]byte{0x0a, byte(len(b))}, b...)
		out = append(out, 0x12, byte(len(link)))
		out = append(out, link...)
	}
	return out
}

func TestCheckLinksWalk(t *testing.T) {
	leafA, leafB := []byte("a"), []byte("b")
	ca, cb := sum(cid.Raw, leafA), sum(cid.Raw, leafB)
	mid := encodePB(ca, cb)
	cm := sum(cid.DagProtobuf, mid)
	root := encodePB(cm, ca)
	cr := sum(cid.DagProtobuf, root)
	blocks := map[cid.Cid][]byte{ca: leafA, cb: leafB, cm: mid, cr: root}

	if err := Check(cr, root); err != nil {
		t.Fatal(err)
	}
	if err := Check(cr, mid); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
	links, err := Links(cr, root)
	if err != nil || len(links) != 2 || !links[0].Equals(cm) || !links[1].Equals(ca) {
		t.Fatalf("links %v %v", links, err)
	}
	var order []cid.Cid
	get := func(c cid.Cid) ([]byte, error) {
		d, ok := blocks[c]
		if !ok {
			return nil, errors.New("missing")
		}
		return d, nil
	}
	if err := Walk(t.Context(), cr, get, func(c cid.Cid, _ []byte) error { order = append(order, c); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []cid.Cid{cr, cm, ca, cb} // depth-first, ca once
	if len(order) != len(want) {
		t.Fatalf("order %v", order)
	}
	for i := range want {
		if !order[i].Equals(want[i]) {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
	delete(blocks, cb)
	if err := Walk(t.Context(), cr, get, func(cid.Cid, []byte) error { return nil }); err == nil {
		t.Fatal("walk with a missing block succeeded")
	}
}

func FuzzLinks(f *testing.F) {
	f.Add(encodePB(sum(cid.Raw, []byte("x"))))
	f.Add([]byte{0x12, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := sum(cid.DagProtobuf, data)
		_, _ = Links(c, data)
		if err := Check(c, data); err != nil {
			t.Fatal(err)
		}
	})
}
