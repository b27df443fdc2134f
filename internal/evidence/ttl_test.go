package evidence

import (
	"testing"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/evidence/evidencetest"
	"github.com/mirrornet/mirrornet/protocol"
)

// A mirror that signs its liveness with a TTL need not speak every probe
// round: its statement keeps it eligible in every round that starts before
// the TTL runs out, and its probe results decide those rounds. Without the
// TTL the same statements cover only the rounds they were signed in.
func TestLivenessTTLCoversLaterRounds(t *testing.T) {
	sc := build(t, 5, nil)
	m0 := sc.mirrors[0]
	verified := func(ttl int64) []bool {
		t.Helper()
		s := NewSet()
		for _, raw := range sc.items {
			st, err := verifyAny(raw)
			if err != nil || st.Kind != attest.KindLiveness || st.Liveness.Peer != m0.String() {
				s.Add(raw)
				continue
			}
			round := (st.Time.UnixMilli() - evidencetest.Epoch0) / evidencetest.RoundMS
			if round%3 != 0 {
				continue // m0 speaks in rounds 0, 3, 6 and 9 only
			}
			l := *st.Liveness
			l.TTL = protocol.MaxLivenessTTL.Milliseconds()
			if ttl == 0 {
				l.TTL = 0
			}
			signed, err := attest.SignLiveness(sc.Keys[m0], l)
			if err != nil {
				t.Fatal(err)
			}
			s.Add(signed)
		}
		in, _, err := Derive(s, sc.params)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range in.Mirrors {
			if m.Peer == m0.String() {
				return m.Verified
			}
		}
		t.Fatalf("mirror %s missing from the ledger input", m0)
		return nil
	}
	count := func(v []bool) (n int) {
		for _, ok := range v {
			if ok {
				n++
			}
		}
		return n
	}
	// RoundMS is 5 minutes and the TTL 10: each statement covers its own
	// round and the two after it, so all twelve rounds.
	if got := count(verified(protocol.MaxLivenessTTL.Milliseconds())); got != 12 {
		t.Errorf("with a TTL, verified in %d of 12 rounds, want 12", got)
	}
	if got := count(verified(0)); got != 4 {
		t.Errorf("without a TTL, verified in %d of 12 rounds, want the 4 it spoke in", got)
	}
}
