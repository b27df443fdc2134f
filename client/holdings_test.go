package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// signedDigest is a liveness statement of key naming set by digest only,
// and the matching holdings statement.
func signedDigest(t testing.TB, key crypto.PrivKey, seq uint64, at time.Time, url string, set ...string) (live, held []byte) {
	t.Helper()
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	set = protocol.SortUnique(set)
	live, err = attest.SignLiveness(key, protocol.Liveness{
		Peer: id.String(), State: protocol.StateUp, Seq: seq, Time: at.UnixMilli(), HTTP: url,
		Holdings: protocol.HoldingsDigest(set), HoldingsCount: len(set), Version: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	held, err = attest.SignHoldings(key, protocol.Holdings{Peer: id.String(), Seq: seq, Time: at.UnixMilli(), Bundles: set})
	if err != nil {
		t.Fatal(err)
	}
	return live, held
}

// TestDigestHoldingsVerified: mirrors whose statements name their holdings
// by digest are used only after the client has verified, from the
// mirror's own signed holdings statement, that it holds the root. A
// mirror serving a list signed by another key, a list of another digest,
// or a list without the root is never asked for a block.
func TestDigestHoldingsVerified(t *testing.T) { inBubble(t, testDigestHoldingsVerified) }

func testDigestHoldingsVerified(t *testing.T) {
	b := smallBundle(t)
	now := time.Now()
	root := b.root.String()
	boot := newFakeMirror(t, b, honest)
	boot.holds = false
	good := newFakeMirror(t, b, honest)
	forged := newFakeMirror(t, b, honest)  // serves a list signed by another key
	stale := newFakeMirror(t, b, honest)   // serves a list of another digest
	without := newFakeMirror(t, b, honest) // its list does not have the root
	kB, kG, kF, kS, kW, kX := newKey(t), newKey(t), newKey(t), newKey(t), newKey(t), newKey(t)

	bootLive, bootHeld := signedDigest(t, kB, 1, now, boot.URL, "bafyother")
	goodLive, goodHeld := signedDigest(t, kG, 1, now, good.URL, root, "bafyother")
	forgedLive, _ := signedDigest(t, kF, 1, now, forged.URL, root)
	_, byOther := signedDigest(t, kX, 1, now, forged.URL, root) // same list, same digest, another key
	staleLive, _ := signedDigest(t, kS, 2, now, stale.URL, root)
	_, staleOld := signedDigest(t, kS, 1, now, stale.URL, root, "bafyother")
	withoutLive, withoutHeld := signedDigest(t, kW, 1, now, without.URL, "bafyother")
	boot.holdings, good.holdings, forged.holdings, stale.holdings, without.holdings = bootHeld, goodHeld, byOther, staleOld, withoutHeld
	boot.statements = [][]byte{bootLive, goodLive, forgedLive, staleLive, withoutLive}

	res, err := Get(context.Background(), b.root, testOptions(t, boot.URL))
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, b, res)
	if res.PerMirror[good.URL] != b.size {
		t.Errorf("the verified holder delivered %d of %d bytes: %v", res.PerMirror[good.URL], b.size, res.PerMirror)
	}
	for name, m := range map[string]*fakeMirror{"forged": forged, "stale": stale, "without": without} {
		if n := m.blockGets.Load(); n != 0 {
			t.Errorf("%s mirror was asked for %d blocks", name, n)
		}
	}

	// Without its holdings statement the holder is not used: fail closed.
	good.holdings = nil
	if _, err := Get(context.Background(), b.root, testOptions(t, boot.URL)); !errors.Is(err, ErrNoMirror) {
		t.Fatalf("holder without a holdings statement: %v", err)
	}
}

// TestHoldAnswersBounded: the cached answers stay bounded however many
// mirrors and digests the client sees.
func TestHoldAnswersBounded(t *testing.T) {
	v := newHealthView(0)
	for i := range 3 * maxHoldAnswers {
		v.setHolds(protocol.HoldingsRef{Peer: "12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf", Digest: protocol.HoldingsDigest([]string{string(rune(i))})}, "r", true)
	}
	if len(v.holds) > maxHoldAnswers {
		t.Fatalf("%d answers cached", len(v.holds))
	}
}

// TestHoldingsReadRetried: a holdings statement that could not be read
// (a 503 before the mirror signed its first list) is not taken as "does
// not list": it is read again, a bounded number of times.
func TestHoldingsReadRetried(t *testing.T) { inBubble(t, testHoldingsReadRetried) }

func testHoldingsReadRetried(t *testing.T) {
	b := smallBundle(t)
	now := time.Now()
	root := b.root.String()
	boot := newFakeMirror(t, b, honest)
	boot.holds = false
	good := newFakeMirror(t, b, honest)
	kB, kG := newKey(t), newKey(t)
	bootLive, bootHeld := signedDigest(t, kB, 1, now, boot.URL, "bafyother")
	goodLive, goodHeld := signedDigest(t, kG, 1, now, good.URL, root)
	boot.holdings, good.holdings = bootHeld, goodHeld
	boot.statements = [][]byte{bootLive, goodLive}

	good.holdingsBusy.Store(maxHoldingsTries - 1)
	res, err := Get(context.Background(), b.root, testOptions(t, boot.URL))
	if err != nil {
		t.Fatalf("holder whose first %d holdings reads failed: %v", maxHoldingsTries-1, err)
	}
	checkResult(t, b, res)
	if res.PerMirror[good.URL] != b.size {
		t.Errorf("the holder delivered %d of %d bytes: %v", res.PerMirror[good.URL], b.size, res.PerMirror)
	}
	if n := good.holdingsReads.Load(); n != maxHoldingsTries {
		t.Errorf("holdings read %d times, want %d", n, maxHoldingsTries)
	}

	// A mirror that never answers is read at most maxHoldingsTries times.
	good.holdingsBusy.Store(1 << 20)
	good.holdingsReads.Store(0)
	if _, err := Get(context.Background(), b.root, testOptions(t, boot.URL)); !errors.Is(err, ErrNoMirror) {
		t.Fatalf("holder whose holdings never answer: %v", err)
	}
	if n := good.holdingsReads.Load(); n != maxHoldingsTries {
		t.Errorf("holdings read %d times, want %d", n, maxHoldingsTries)
	}
}
