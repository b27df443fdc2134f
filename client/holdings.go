package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// A liveness statement names what its mirror holds inline (the older
// form) or by the digest of the mirror's signed holdings statement only
// (see protocol, section Holdings). For the latter the client reads the
// holdings statement from the mirror itself (protocol.HTTPHoldingsPath),
// verifies it against the digest of the liveness statement it holds (the
// same key signed both), and keeps only the answer it needs: whether the
// mirror holds the root. Memory stays bounded whatever the mirrors hold:
// one statement is read at a time (at most protocol.MaxHoldingsSize
// bytes), and the answers are at most maxHoldAnswers bits.

// maxHoldAnswers bounds the cached holdings answers; past it the cache is
// cleared (answers are cheap to get again).
const maxHoldAnswers = 4096

// errHoldings: a mirror's holdings statement could not be read or did not
// verify against its liveness statement.
var errHoldings = errors.New("client: holdings statement")

// errHoldingsInvalid: a holdings statement was read but is not the one
// the mirror's liveness statement names (reading it again will not help).
var errHoldingsInvalid = fmt.Errorf("%w: does not verify", errHoldings)

// holdKey is one answer: does mirror peer, whose statement names holdings
// digest, hold root.
type holdKey struct {
	peer   peer.ID
	digest string
	root   string
}

// holdingsNeed is a mirror whose holdings statement must be read before
// the view can say whether it holds a root.
type holdingsNeed struct {
	url string
	ref protocol.HoldingsRef
	// vouchers is how many sources delivered the mirror's statement.
	vouchers int
}

// listsLocked reports whether the statement l of id says it holds root:
// inline, or by a verified holdings statement with l's digest.
func (v *healthView) listsLocked(id peer.ID, l *protocol.Liveness, root string) bool {
	if l.Inline() {
		_, found := slices.BinarySearch(l.Bundles, root)
		return found
	}
	return v.holds[holdKey{id, l.Holdings, root}]
}

// knownLocked reports whether the view knows if id (statement l) holds
// root.
func (v *healthView) knownLocked(id peer.ID, l *protocol.Liveness, root string) bool {
	_, ok := v.holds[holdKey{id, l.Holdings, root}]
	return ok
}

// needHoldings lists the up, fresh mirrors with a usable URL whose
// statements name their holdings by digest and for which the view does
// not know yet whether they hold root: vouched for by the most sources
// first (a source minting mirrors cannot push the others back), then by
// URL.
func (v *healthView) needHoldings(root string, now time.Time, maxAge time.Duration) []holdingsNeed {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []holdingsNeed
	for id, st := range v.latest {
		l := st.Liveness
		if l.Inline() || l.Holdings == "" || l.State != protocol.StateUp || l.HTTP == "" || stale(st, now, maxAge) || v.knownLocked(id, l, root) {
			continue
		}
		u, err := statementURL(l.HTTP)
		if err != nil {
			continue
		}
		out = append(out, holdingsNeed{url: u, ref: protocol.HoldingsRef{Peer: id.String(), Digest: l.Holdings}, vouchers: len(v.vouched[id])})
	}
	slices.SortFunc(out, func(a, b holdingsNeed) int {
		switch {
		case a.vouchers != b.vouchers:
			return b.vouchers - a.vouchers
		case a.url < b.url:
			return -1
		case a.url > b.url:
			return 1
		}
		return 0
	})
	return out
}

// setHolds records whether the mirror ref names holds root.
func (v *healthView) setHolds(ref protocol.HoldingsRef, root string, held bool) {
	id, err := peer.Decode(ref.Peer)
	if err != nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.holds) >= maxHoldAnswers {
		clear(v.holds)
	}
	v.holds[holdKey{id, ref.Digest, root}] = held
}

// fetchHoldings reads the holdings statement of the mirror at base,
// verifies it against ref (signed by ref.Peer, list of digest
// ref.Digest) and reports whether it lists root.
func fetchHoldings(ctx context.Context, hc *http.Client, base string, ref protocol.HoldingsRef, root string, now time.Time) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+protocol.HTTPHoldingsPath, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", protocol.HoldingsContentType)
	resp, err := hc.Do(req)
	if err != nil {
		return false, fmt.Errorf("%w: %s", errHoldings, shortErr(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("%w: HTTP %d", errHoldings, resp.StatusCode)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, protocol.MaxHoldingsSize+1))
	if err != nil {
		return false, fmt.Errorf("%w: %s", errHoldings, shortErr(err))
	}
	if len(raw) > protocol.MaxHoldingsSize {
		return false, fmt.Errorf("%w: more than %d bytes", errHoldingsInvalid, protocol.MaxHoldingsSize)
	}
	st, err := attest.VerifyHoldings(raw, ref, now)
	if err != nil {
		return false, fmt.Errorf("%w: %w", errHoldingsInvalid, err)
	}
	_, found := slices.BinarySearch(st.Holdings.Bundles, root)
	return found, nil
}
