package runner

import (
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/protocol"
)

func TestHealthView(t *testing.T) {
	v := health.New(health.DefaultConfig())
	now := time.UnixMilli(1_800_000_000_000)
	for i := byte(0); i < 2; i++ {
		k, id := key(t, i)
		raw, err := attest.SignLiveness(k, protocol.Liveness{Peer: id.String(), State: protocol.StateUp, Seq: uint64(1 + i),
			Time: now.Add(-time.Duration(i) * time.Minute).UnixMilli(), HTTP: "http://127.0.0.1:8080", Bundles: []string{"bafya", "bafyb"}})
		if err != nil {
			t.Fatal(err)
		}
		st, err := attest.Verify(raw, now.Add(-time.Duration(i)*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		v.Apply(st, now)
	}
	_, alive := key(t, 0)
	_, dead := key(t, 1) // its statement is a minute old: dead on the lan profile
	h := HealthView{v}
	if ms := h.Mirrors(now); len(ms) != 1 || ms[0].ID != alive || ms[0].HTTP == "" || len(ms[0].Bundles) != 2 {
		t.Errorf("mirrors %+v", ms)
	}
	if got := h.Alive(now); !slices.Equal(got, []peer.ID{alive}) {
		t.Errorf("alive %v", got)
	}
	if !h.Holds(alive, "bafyb", now) || h.Holds(alive, "bafyc", now) || h.Holds(dead, "bafya", now) {
		t.Error("Holds")
	}
	if got := h.HolderIDs("bafya", now); !slices.Equal(got, []peer.ID{alive}) {
		t.Errorf("holders %v", got)
	}
	if !h.Known(dead, now) || !h.Known(alive, now) {
		t.Error("Known")
	}
}
