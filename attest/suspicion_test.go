package attest_test

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

func TestSuspicionSignVerify(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	bob, _, _ := crypto.GenerateEd25519Key(nil)
	alice, _, _ := crypto.GenerateEd25519Key(nil)
	bobID, _ := peer.IDFromPrivateKey(bob)
	aliceID, _ := peer.IDFromPrivateKey(alice)
	s := protocol.Suspicion{Observer: bobID.String(), Subject: aliceID.String(), Incarnation: 7, Time: now.UnixMilli()}
	raw, err := attest.SignSuspicion(bob, s)
	if err != nil {
		t.Fatal(err)
	}
	st, err := attest.Verify(raw, now)
	if err != nil || st.Kind != attest.KindSuspicion || st.Signer != bobID || st.Seq != 7 || *st.Suspicion != s {
		t.Fatalf("Verify = %+v, %v", st, err)
	}
	// Only the observer can sign it; nobody suspects itself.
	if _, err := attest.SignSuspicion(alice, s); attest.Reason(err) != "subject" {
		t.Errorf("signed by the subject: %v", err)
	}
	self := s
	self.Subject = self.Observer
	if _, err := attest.SignSuspicion(bob, self); attest.Reason(err) != "payload" {
		t.Errorf("suspicion of self: %v", err)
	}
	if _, err := attest.Verify(raw, now.Add(2*protocol.MaxLivenessAge)); attest.Classify(err) != attest.Ignore {
		t.Errorf("an old suspicion: %v", err)
	}
}
