package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	bsmsg "github.com/ipfs/boxo/bitswap/message"
	pb "github.com/ipfs/boxo/bitswap/message/pb"
	"github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// TestE2EBitswapPeerState: a peer that asks a mirror for a block over
// bitswap and never cancels its want shows in `status --json` and in
// /metrics with its open want and the want's age.
func TestE2EBitswapPeerState(t *testing.T) {
	m := startNode(t)
	pub := publishJSON(t, m.data, sampleDir(t))
	mi := m.info(t)
	root, err := cid.Decode(pub.CID)
	if err != nil {
		t.Fatal(err)
	}

	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	got := make(chan struct{}, 16)
	h.SetStreamHandler(bsnet.ProtocolBitswap, func(s network.Stream) {
		defer s.Close()
		_, _ = io.Copy(io.Discard, s)
		got <- struct{}{}
	})
	ai, err := peer.AddrInfoFromP2pAddr(ma.StringCast(mi.Addrs[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Connect(t.Context(), *ai); err != nil {
		t.Fatal(err)
	}
	s, err := h.NewStream(t.Context(), ai.ID, bsnet.ProtocolBitswap)
	if err != nil {
		t.Fatal(err)
	}
	msg := bsmsg.New(false)
	msg.AddEntry(root, 1, pb.Message_Wantlist_Block, true)
	if err := msg.ToNetV1(s); err != nil {
		t.Fatal(err)
	}
	s.Close()
	select {
	case <-got:
	case <-time.After(guardSlack * 20 * time.Second): // a failure guard, like waitFor's
		t.Fatal("the mirror did not answer the want")
	}

	// The want stays open (never cancelled) and ages.
	waitFor(t, 20*time.Second, "status shows the peer's open want", func() (bool, string) {
		st := statusJSON(t, mi.HTTP)
		for _, p := range st.Bitswap.Peers {
			if p.Peer == h.ID() {
				return p.WantsOpen == 1 && p.OldestOpenWant > 0.2, fmt.Sprintf("%+v", p)
			}
		}
		return false, fmt.Sprintf("%+v", st.Bitswap)
	})
	if out, errOut, code := mirrornet(t, "status", "--http", mi.HTTP); code != 0 || !strings.Contains(out, "OLDEST OPEN WANT") || !strings.Contains(out, h.ID().String()) {
		t.Errorf("status: exit %d, %s%s", code, out, errOut)
	}
	body, status := httpGet(t, mi.HTTP+"/metrics", "")
	if status != http.StatusOK {
		t.Fatalf("/metrics: %d", status)
	}
	for _, want := range []string{
		`mirrornet_bitswap_peer_wants_open{peer="` + h.ID().String() + `"} 1`,
		`mirrornet_bitswap_peer_oldest_open_want_seconds{peer="` + h.ID().String() + `"}`,
		`mirrornet_bitswap_peer_bytes_outstanding{peer="` + h.ID().String() + `"} 0`,
		`mirrornet_bitswap_peers_cut_off_total{reason="slow_reader"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
