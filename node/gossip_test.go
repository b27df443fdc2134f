package node

import (
	"context"
	"testing"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// Copies of one statement arriving from several mesh peers are verified
// once: the first copy's verdict stands for the rest (ignore after an
// accept, reject after a reject), until the verdict is two heartbeats old.
func TestValidateCopiesShareOneCheck(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	sk, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := peer.IDFromPrivateKey(sk)
	now := n.clock()
	raw, err := attest.SignLiveness(sk, protocol.Liveness{Peer: signer.String(), State: protocol.StateUp, Seq: 7, Time: now.UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	forged := append([]byte{}, raw...)
	forged[len(forged)-3] ^= 0x40 // inside the signature

	ctx := context.Background()
	verdicts := func(data []byte, k int) []string {
		var out []string
		for range k {
			out = append(out, verdictName(n.validate(ctx, signer, msgOf(data))))
		}
		return out
	}
	count := func(verdict, reason string) float64 {
		return counterValue(t, n.metrics.statements.WithLabelValues("liveness", verdict, reason))
	}

	if got := verdicts(raw, 3); got[0] != "accept" || got[1] != "ignore" || got[2] != "ignore" {
		t.Fatalf("genuine statement, three copies: %v, want accept, ignore, ignore", got)
	}
	if got := verdicts(forged, 2); got[0] != "reject" || got[1] != "reject" {
		t.Fatalf("forged statement, two copies: %v, want reject twice", got)
	}
	if d := counterValue(t, n.metrics.duplicates); d != 3 {
		t.Errorf("duplicates counted %v, want 3", d)
	}
	if r := count("ignore", "replay"); r != 0 {
		t.Errorf("%v copies went through the sequence guard, want 0 (they share the first verdict)", r)
	}
	if m, ok := n.view.Mirror(signer, now); !ok || m.Seq != 7 {
		t.Errorf("view after the copies: %+v, %v; want the statement applied", m, ok)
	}

	// Two heartbeats later the verdicts are forgotten: a late copy is
	// verified again and the sequence guard ignores it as a replay.
	n.verdicts.rotate()
	n.verdicts.rotate()
	if got := verdicts(raw, 1); got[0] != "ignore" {
		t.Fatalf("late copy: %v, want ignore", got)
	}
	if r := count("ignore", "replay"); r != 1 {
		t.Errorf("late copy: replay counted %v times, want 1", r)
	}
}

func verdictName(v pubsub.ValidationResult) string {
	switch v {
	case pubsub.ValidationAccept:
		return "accept"
	case pubsub.ValidationIgnore:
		return "ignore"
	case pubsub.ValidationReject:
		return "reject"
	}
	return "other"
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
