package runner

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/probe"
	"github.com/mirrornet/mirrornet/protocol"
)

// Gossip figures used for the traffic estimate (FIELD-NOTES: each node
// receives about 6 copies of a message; a gossipsub message adds the
// origin's peer ID, seqno, topic and a 64-byte signature, about 150 bytes).
const (
	gossipCopies   = 6
	pubsubOverhead = 150
)

// messageSizes measures a realistic signed probe result and liveness
// statement, and the HTTP overhead of one raw-block request.
func messageSizes(t *testing.T) (probeResult, liveness, reqOverhead int) {
	k, id := key(t, 0)
	tk, target := key(t, 1)
	d := buildDAG(t, 1, 8)
	now := fixedNow
	epoch, round, nonce := probe.Nonce(now, 5*time.Minute, target, id)
	// A pass carries two receipts: the root and the last descent's leaf.
	var receipts []string
	for _, c := range []string{d.root.String(), d.leaves[9].String()} {
		r, err := attest.SignProbeReceipt(tk, id.String(), nonce, c, now.Add(30*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		receipts = append(receipts, r)
	}
	raw, err := attest.SignProbe(k, protocol.ProbeResult{
		Observer: id.String(), Target: target.String(), Epoch: epoch, Round: round, Seq: uint64(now.UnixMilli()),
		Time: now.UnixMilli(), Bundle: d.root.String(),
		Challenge: fmt.Sprintf("descent:%x:12.3.117,4.0.901", nonce[:]), Outcome: protocol.OutcomePass, LatencyMS: 37,
		Addr: "203.0.113.7", Receipts: receipts,
	})
	if err != nil {
		t.Fatal(err)
	}
	lraw, err := attest.SignLiveness(k, protocol.Liveness{
		Peer: id.String(), State: protocol.StateUp, Seq: uint64(now.UnixMilli()), Time: now.UnixMilli(),
		Addrs:   []string{"/ip4/203.0.113.7/tcp/4001", "/ip4/203.0.113.7/udp/4001/quic-v1"},
		HTTP:    "http://203.0.113.7:8080",
		Bundles: protocol.SortUnique([]string{d.root.String(), buildDAG(t, 2, 2).root.String(), buildDAG(t, 3, 2).root.String()}),
		Version: "v0.1.0",
	})
	if err != nil {
		t.Fatal(err)
	}
	// One request and its response headers, as they go over the wire.
	srv := gateway(t, d, nil)
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/ipfs/"+d.leaves[0].String()+"?format=raw", nil)
	req.Header.Set("Accept", "application/vnd.ipld.raw")
	dumpReq, _ := httputil.DumpRequestOut(req, false)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	dumpResp, _ := httputil.DumpResponse(resp, false)
	resp.Body.Close()
	return len(raw), len(lraw), len(dumpReq) + len(dumpResp)
}

// TestProbeTraffic prints the traffic table of docs/BENCHMARKS.md ("Probes")
// and checks that probing stays a small fraction of liveness gossip.
func TestProbeTraffic(t *testing.T) {
	cfg := DefaultConfig() // lan
	probeSize, livenessSize, reqOverhead := messageSizes(t)
	roundsPerHour := float64(time.Hour / cfg.Interval)
	probesPerMirror := float64(cfg.Observers) * roundsPerHour // each target has Observers observers
	// A challenge fetches the root, one inner level and one leaf per
	// descent (inner blocks shared): 2 + Descents requests for a
	// two-level bundle. Block sizes: a 200-entry root directory
	// (~9 KiB), a file node (~1 KiB), leaves of a typical dapp bundle
	// (~24 KiB median file) and of the 1 MiB-chunk worst case.
	reqs := float64(2 + cfg.Descents)
	typical := reqs*float64(reqOverhead) + (9<<10 + 1<<10) + float64(cfg.Descents)*(24<<10)
	worst := reqs*float64(reqOverhead) + (9<<10 + 1<<10) + float64(cfg.Descents)*(1<<20)
	t.Logf("signed probe result %d B, signed liveness %d B, HTTP request+response headers %d B", probeSize, livenessSize, reqOverhead)
	t.Logf("lan: interval %s, %d observers per target, %.0f challenges made and served per mirror per hour", cfg.Interval, cfg.Observers, probesPerMirror)
	t.Logf("| N | probe gossip in (MB/h) | challenges made+served, typical (MB/h) | worst 1 MiB leaves (MB/h) | liveness gossip in (MB/h) | probe gossip / liveness |")
	hb := time.Second // lan heartbeat (internal/health)
	for _, n := range []int{50, 100, 200} {
		results := float64(n) * probesPerMirror
		probeGossip := results * float64(probeSize+pubsubOverhead) * gossipCopies
		liveGossip := float64(n) * float64(time.Hour/hb) * float64(livenessSize+pubsubOverhead) * gossipCopies
		t.Logf("| %d | %.1f | %.1f | %.0f | %.0f | %.0f%% |", n, probeGossip/1e6, 2*probesPerMirror*typical/1e6, 2*probesPerMirror*worst/1e6,
			liveGossip/1e6, 100*probeGossip/liveGossip)
		if probeGossip > liveGossip/2 {
			t.Errorf("N=%d: probe gossip %.0f MB/h exceeds half the liveness gossip %.0f MB/h", n, probeGossip/1e6, liveGossip/1e6)
		}
	}
	if probeSize > 1280 { // two receipts of about 160 bytes each included
		t.Errorf("signed probe result is %d bytes", probeSize)
	}
}

// BenchmarkDetection runs the simulated network at N = 50, 100, 200 with a
// garbage-serving and a half-serving mirror and reports the rounds until
// each is degraded (and the garbage one failing). Run with
// go test -run XX -bench Detection -benchtime 1x ./internal/probe/runner.
func BenchmarkDetection(b *testing.B) {
	for _, n := range []int{50, 100, 200} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for range b.N {
				hows := make([]behaviour, n)
				hows[0], hows[1] = garbage, half
				s := newSim(b, uint64(n), hows, 0.05)
				gDeg, gFail, hDeg := 0, 0, 0
				for r := 1; r <= 10 && (gFail == 0 || hDeg == 0); r++ {
					s.round()
					if st := s.status(0); gDeg == 0 && excluded(st.State) {
						gDeg = r
					}
					if st := s.status(0); gFail == 0 && st.State == probe.StateFailing {
						gFail = r
					}
					if st := s.status(1); hDeg == 0 && excluded(st.State) {
						hDeg = r
					}
					s.now = s.now.Add(s.cfg.Interval)
				}
				b.ReportMetric(float64(gDeg), "rounds-garbage-degraded")
				b.ReportMetric(float64(gFail), "rounds-garbage-failing")
				b.ReportMetric(float64(hDeg), "rounds-half-degraded")
			}
		})
	}
}

// BenchmarkAssignment measures one round's assignment work for one mirror
// (probe.Targets) at N = 200.
func BenchmarkAssignment(b *testing.B) {
	ids := make([]peer.ID, 200)
	for i := range ids {
		k, _, _ := crypto.GenerateEd25519Key(strings.NewReader(strings.Repeat(fmt.Sprintf("%03d", i), 22)))
		ids[i], _ = peer.IDFromPrivateKey(k)
	}
	b.ResetTimer()
	for i := range b.N {
		probe.Targets(uint64(i), ids[0], ids, 6)
	}
}
