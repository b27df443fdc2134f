package adversary_test

import (
	"testing"
	"time"

	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/mirrornet/mirrornet/node"
)

// Once the view is full of strangers it may not evict, a stranger's
// statement is refused on its claimed signer before any signature is
// checked: a flood of throwaway keys then costs an envelope decode per
// statement, not a signature check on every core. The proof: a statement
// whose signature is broken is refused as "view_full" (Ignore), where a
// verifier would have rejected it for its signature; and a mirror already
// in the view is still verified, and its statements still accepted.
func TestFloodRefusedBeforeSignatureWhenViewFull(t *testing.T) {
	const capacity = 4
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	clock := newFakeClock()
	v := newVictim(t, mn, clock.Now, "", func(c *node.Config) { c.MaxMirrors = capacity })
	ah, _ := newHost(t, mn)
	if _, err := mn.ConnectPeers(ah.ID(), v.ID()); err != nil {
		t.Fatal(err)
	}
	w := newGossipWriter(t, ah, v.ID())

	// The victim itself holds one place; strangers fill the rest, and one
	// more is refused after a scan (the view then knows it is full).
	var held []throwaway
	sent := 0
	for range capacity {
		k := newThrowaway(t)
		held = append(held, k)
		w.publish(t, k.liveness(t, 1, clock.Now(), "", false))
		sent++
		v.verdicts.waitOthers(t, v.ID(), sent, 2*time.Minute)
	}
	if got := v.refusals(t)["view_full"]; got == 0 {
		t.Fatal("the view never filled: the test's premise does not hold")
	}

	// A stranger with a broken signature: refused for the full view,
	// without its signature being checked.
	bad := newThrowaway(t)
	raw := bad.liveness(t, 1, clock.Now(), "", false)
	raw[len(raw)-1] ^= 0xff // the envelope ends with its signature
	before := v.refusals(t)
	w.publish(t, raw)
	sent++
	v.verdicts.waitOthers(t, v.ID(), sent, 2*time.Minute)
	after := v.refusals(t)
	if after["view_full"] != before["view_full"]+1 {
		t.Fatalf("a stranger's statement with a broken signature was judged on its signature, not refused for the full view: refusals %v, before %v", after, before)
	}

	// A mirror the view holds is verified and accepted as before.
	k := held[len(held)-2]
	clock.Advance(2 * time.Second)
	w.publish(t, k.liveness(t, 2, clock.Now(), "", false))
	v.verdicts.waitJudged(t, k.id, 2, 2*time.Minute)
	if v.verdicts.acceptedFrom(k.id) != 2 {
		t.Fatalf("a held mirror's next statement was not accepted (refusals %v)", v.refusals(t))
	}
}
