// Package verify holds the pure block-level checks mirrornet applies to
// every IPFS block it stores or serves: does a block hash to its CID, which
// blocks does it link to, and a depth-first walk of a DAG in CAR export
// order. It depends only on go-cid, go-multihash and go-codec-dagpb, so the
// block store can use it without pulling in networking code; package bundle
// re-exports it.
package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
	dagpb "github.com/ipld/go-codec-dagpb"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	mh "github.com/multiformats/go-multihash"
)

// MaxBlockSize is the largest block mirrornet accepts: the bitswap spec
// maximum (2 MiB).
const MaxBlockSize = 2 << 20

var (
	// ErrHashMismatch means a block's bytes do not hash to its CID.
	ErrHashMismatch = errors.New("bundle: block hash does not match its CID")
	// ErrUnsupportedCodec means a block uses a codec other than dag-pb or raw.
	ErrUnsupportedCodec = errors.New("bundle: unsupported codec (want dag-pb or raw)")
	// ErrBadBlock means a dag-pb block could not be decoded.
	ErrBadBlock = errors.New("bundle: malformed dag-pb block")
)

// Links returns the CIDs a block links to, in link order: none for a raw
// block, the PBNode links for dag-pb. The returned slice is the caller's.
func Links(c cid.Cid, data []byte) ([]cid.Cid, error) {
	switch c.Type() {
	case cid.Raw:
		return nil, nil
	case cid.DagProtobuf:
		nb := dagpb.Type.PBNode.NewBuilder()
		if err := dagpb.DecodeBytes(nb, data); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadBlock, c, err)
		}
		nd, ok := nb.Build().(dagpb.PBNode)
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrBadBlock, c)
		}
		links := nd.FieldLinks()
		out := make([]cid.Cid, 0, links.Length())
		for it := links.Iterator(); !it.Done(); {
			_, l := it.Next()
			cl, ok := l.FieldHash().Link().(cidlink.Link)
			if !ok {
				return nil, fmt.Errorf("%w: %s: link is not a CID", ErrBadBlock, c)
			}
			out = append(out, cl.Cid)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%w: %s has codec 0x%x", ErrUnsupportedCodec, c, c.Type())
	}
}

// Check returns nil when data hashes to c's multihash, else ErrHashMismatch.
func Check(c cid.Cid, data []byte) error {
	pref := c.Prefix()
	if pref.MhType == mh.SHA2_256 && pref.MhLength == sha256.Size {
		sum := sha256.Sum256(data)
		dm, err := mh.Decode(c.Hash())
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrHashMismatch, c, err)
		}
		if !bytes.Equal(dm.Digest, sum[:]) {
			return fmt.Errorf("%w: %s", ErrHashMismatch, c)
		}
		return nil
	}
	got, err := pref.Sum(data)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrHashMismatch, c, err)
	}
	if !bytes.Equal(got.Hash(), c.Hash()) {
		return fmt.Errorf("%w: %s", ErrHashMismatch, c)
	}
	return nil
}

// Walk visits the DAG under root depth-first, parents before children and
// children in link order, each block once: the order of a CARv1 export
// (`ipfs dag export`). get returns a block's bytes; Walk checks them against
// the CID before calling visit, so visit only sees verified blocks. An error
// from get or visit stops the walk and is returned unchanged.
func Walk(ctx context.Context, root cid.Cid, get func(cid.Cid) ([]byte, error), visit func(cid.Cid, []byte) error) error {
	seen := make(map[string]struct{})
	stack := []cid.Cid{root}
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := seen[c.KeyString()]; ok {
			continue
		}
		seen[c.KeyString()] = struct{}{}
		data, err := get(c)
		if err != nil {
			return err
		}
		if err := Check(c, data); err != nil {
			return err
		}
		links, err := Links(c, data)
		if err != nil {
			return err
		}
		if err := visit(c, data); err != nil {
			return err
		}
		for i := len(links) - 1; i >= 0; i-- {
			stack = append(stack, links[i])
		}
	}
	return nil
}
