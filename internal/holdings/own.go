package holdings

import (
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// Own is a mirror's own signed holdings statement: it signs a new one
// whenever the set of bundles changes, with a sequence number that never
// goes back. Safe for concurrent use.
type Own struct {
	key  crypto.PrivKey
	peer string

	mu  sync.Mutex
	seq uint64
	ref protocol.HoldingsRef // the current holdings
	raw []byte               // its signed statement
	st  *attest.Statement
}

// NewOwn returns the holdings of the mirror whose key is key and whose
// peer ID is peer (its string form).
func NewOwn(key crypto.PrivKey, peer string) *Own {
	return &Own{key: key, peer: peer}
}

// Update returns the digest of bundles (sorted, unique, at most
// protocol.MaxHoldings), signing a new holdings statement at now when
// they changed. Call it before signing the liveness statement that names
// the digest, so the statement is served before anyone asks for it.
func (o *Own) Update(bundles []string, now time.Time) (digest string, err error) {
	d := protocol.HoldingsDigest(bundles)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.raw != nil && o.ref.Digest == d {
		return d, nil
	}
	seq := max(o.seq+1, uint64(now.UnixMilli()))
	raw, err := attest.SignHoldings(o.key, protocol.Holdings{Peer: o.peer, Seq: seq, Time: now.UnixMilli(), Bundles: bundles})
	if err != nil {
		return "", fmt.Errorf("holdings: sign own holdings: %w", err)
	}
	st, err := attest.Verify(raw, now)
	if err != nil {
		return "", fmt.Errorf("holdings: own holdings: %w", err)
	}
	o.seq, o.ref, o.raw, o.st = seq, protocol.HoldingsRef{Peer: o.peer, Digest: d}, raw, st
	return d, nil
}

// Statement is the current signed holdings statement and its reference
// (nil before the first Update).
func (o *Own) Statement() (*attest.Statement, protocol.HoldingsRef) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.st, o.ref
}
