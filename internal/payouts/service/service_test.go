package service

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/client"
	"github.com/mirrornet/mirrornet/internal/evidence/evidencetest"
	"github.com/mirrornet/mirrornet/internal/ledger"
	"github.com/mirrornet/mirrornet/internal/payouts"
	"github.com/mirrornet/mirrornet/protocol"
)

type fakeReleases struct{ sc *evidencetest.Scenario }

func (f fakeReleases) Maintainers(app string) (protocol.MaintainerSet, bool) {
	return f.sc.Maintainers, app == f.sc.App
}
func (f fakeReleases) Raw(string) [][]byte { return [][]byte{f.sc.Release} }

type fakeDomains map[string]string

func (d fakeDomains) Domain(p peer.ID) string { return d[p.String()] }

// mirror is one mirror's keeper and receipts service on loopback.
type mirror struct {
	id  peer.ID
	k   *payouts.Keeper
	srv *httptest.Server
	pub [][]byte // witnesses published
}

func newMirror(t *testing.T, sc *evidencetest.Scenario, i int, now func() time.Time) *mirror {
	t.Helper()
	cfg := payouts.DefaultConfig()
	cfg.ProbeEpoch, cfg.K = evidencetest.RoundMS*time.Millisecond, 2
	id := sc.Mirrors[i]
	k, err := payouts.New(cfg, sc.Keys[id], fakeReleases{sc}, fakeDomains(sc.Domains))
	if err != nil {
		t.Fatal(err)
	}
	m := &mirror{id: id, k: k}
	mux := http.NewServeMux()
	New(k, now, func(raw []byte) error { m.pub = append(m.pub, raw); return nil }).Routes(mux)
	m.srv = httptest.NewServer(mux)
	t.Cleanup(m.srv.Close)
	return m
}

// feed gives k the scenario's evidence (funds, payout addresses, liveness,
// probes and witnesses).
func feed(t *testing.T, k *payouts.Keeper, sc *evidencetest.Scenario, extra [][]byte, now time.Time) {
	t.Helper()
	for _, raw := range append(append([][]byte(nil), sc.Items...), extra...) {
		switch {
		case protocol.IsSignedRelease(raw):
		case protocol.IsSignedRecord(raw):
			if _, err := k.AddFund(raw, now); err != nil && !errors.Is(err, payouts.ErrRollback) {
				t.Fatal(err)
			}
		default:
			st, err := attest.Verify(raw, now)
			if st == nil {
				t.Fatal(err)
			}
			if !k.AddPayout(st) {
				k.Observe(st)
			}
		}
	}
}

func line(tab *ledger.Table, id peer.ID) ledger.Payout {
	for _, p := range tab.Payouts {
		if p.PeerID == id.String() {
			return p
		}
	}
	return ledger.Payout{}
}

// A light client's fetch from two mirrors ends in one receipt per mirror,
// signed with a key kept between runs and posted to both; each mirror
// witnesses the batch, and the epoch's ledger counts each mirror's bytes
// through the other's witness (a mirror's own witness does not count).
// Receipts from a hundred client keys in one /24 add at most the fund's
// network cap, and one key's at most its key cap.
func TestClientReceiptsCountInTheLedger(t *testing.T) {
	sc := evidencetest.Build(t, 5, nil)
	at := time.UnixMilli(evidencetest.Epoch0 + 2*60_000)
	now := func() time.Time { return at }
	m0, m1 := newMirror(t, sc, 0, now), newMirror(t, sc, 1, now)
	root, err := cid.Decode(evidencetest.AppCID)
	if err != nil {
		t.Fatal(err)
	}
	res := &client.Result{Root: root,
		PerMirror: map[string]int64{m0.srv.URL: 3 << 20, m1.srv.URL: 5 << 20},
		Peers:     map[string]string{m0.srv.URL: m0.id.String(), m1.srv.URL: m1.id.String(), "http://127.0.0.1:1": sc.Mirrors[4].String()}}
	keyPath := filepath.Join(t.TempDir(), "mirrornet", "client.key")
	key, err := client.LoadClientKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := client.SendReceipts(context.Background(), res, client.ReceiptOptions{Key: key, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Receipts) != 2 || len(rep.Witnesses) != 2 || len(m0.pub) != 1 || len(m1.pub) != 1 {
		t.Fatalf("%d receipts, witnessed by %v (refused %v); published %d and %d", len(rep.Receipts), rep.Witnesses, rep.Refused, len(m0.pub), len(m1.pub))
	}
	// The key outlives the run: the next run signs as the same client.
	again, err := client.LoadClientKey(keyPath)
	if err != nil || !again.Equals(key) {
		t.Fatalf("client key not kept between runs: %v", err)
	}

	closed := time.UnixMilli(evidencetest.Epoch0 + sc.Fund.EpochMS)
	// m0 hears m1's witness by gossip.
	feed(t, m0.k, sc, m1.pub, at)
	tab, in, _, err := m0.k.Ledger(sc.Fund.ID(), 0, closed)
	if err != nil {
		t.Fatal(err)
	}
	// The scenario holds one receipt of 1 MiB for mirror 0 already.
	if got := line(tab, m0.id).TrafficBytes; got != 1<<20+3<<20 {
		t.Errorf("mirror 0 traffic %d, want %d (its scenario receipt and the client's)", got, 1<<20+3<<20)
	}
	if got := line(tab, m1.id).TrafficBytes; got != 5<<20 {
		t.Errorf("mirror 1 traffic %d, want %d", got, 5<<20)
	}
	if len(in.Receipts) != 3 {
		t.Errorf("%d receipts counted, want 3 (each once, through the other mirror's witness)", len(in.Receipts))
	}

	// A farm of a hundred client keys in one /24 (loopback) claims a GiB
	// each for mirror 2; one more key claims 3 GiB for mirror 3 in 1 GiB
	// receipts.
	r := rand.New(rand.NewSource(7))
	var batch [][]byte
	sign := func(k crypto.PrivKey, seq uint64, mirror peer.ID, n uint64) {
		id, _ := peer.IDFromPrivateKey(k)
		raw, err := attest.SignReceipt(k, protocol.Receipt{Client: id.String(), Seq: seq, Time: at.UnixMilli(), Mirror: mirror.String(), CID: evidencetest.AppCID, Bytes: n})
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, raw)
	}
	for i := range 100 {
		k, _, _ := crypto.GenerateEd25519Key(r)
		sign(k, uint64(i+1), sc.Mirrors[2], 1<<30)
	}
	big, _, _ := crypto.GenerateEd25519Key(r)
	for i := range 3 {
		sign(big, uint64(i+1), sc.Mirrors[3], 1<<30)
	}
	for len(batch) > 0 {
		n := min(len(batch), protocol.MaxReceiptsPerPost)
		var body bytes.Buffer
		for _, raw := range batch[:n] {
			_ = protocol.WriteFrame(&body, raw)
		}
		batch = batch[n:]
		resp, err := http.Post(m1.srv.URL+protocol.HTTPReceiptsPath, "application/octet-stream", &body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("farm receipts: %s", resp.Status)
		}
	}
	feed(t, m0.k, sc, m1.pub, at)
	tab, _, _, err = m0.k.Ledger(sc.Fund.ID(), 0, closed)
	if err != nil {
		t.Fatal(err)
	}
	if got := line(tab, sc.Mirrors[2]).TrafficBytes; got > sc.Fund.NetworkCap || got == 0 {
		t.Errorf("a hundred keys in one /24 count %d bytes for mirror 2: want 1..%d (one network's cap)", got, sc.Fund.NetworkCap)
	}
	if got := line(tab, sc.Mirrors[3]).TrafficBytes; got != sc.Fund.KeyCap {
		t.Errorf("one key's 3 GiB count %d bytes for mirror 3: want its key cap %d", got, sc.Fund.KeyCap)
	}
}

// Bad input: junk and receipts that do not verify are refused with one
// line; a post of nothing is refused; the rate limit answers 429.
func TestReceiptsBadInput(t *testing.T) {
	sc := evidencetest.Build(t, 2, nil)
	at := time.UnixMilli(evidencetest.Epoch0 + 60_000)
	m := newMirror(t, sc, 0, func() time.Time { return at })
	post := func(body []byte) (int, string) {
		resp, err := http.Post(m.srv.URL+protocol.HTTPReceiptsPath, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	for _, body := range [][]byte{[]byte("\x05junk!\x00"), {}, {0}} {
		if code, msg := post(body); code != http.StatusBadRequest || bytes.Count(bytes.TrimSpace([]byte(msg)), []byte("\n")) != 0 {
			t.Errorf("%q: %d %q", body, code, msg)
		}
	}
	if len(m.pub) != 0 {
		t.Fatal("bad input was witnessed")
	}
	ck, _, _ := crypto.GenerateEd25519Key(nil)
	id, _ := peer.IDFromPrivateKey(ck)
	rc, err := attest.SignReceipt(ck, protocol.Receipt{Client: id.String(), Seq: 1, Time: at.UnixMilli(), Mirror: sc.Mirrors[1].String(), CID: evidencetest.AppCID, Bytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	var frame bytes.Buffer
	_ = protocol.WriteFrame(&frame, rc)
	limited := 0
	for range MaxReceiptPostsPerMinute {
		if code, _ := post(frame.Bytes()); code == http.StatusTooManyRequests {
			limited++
		}
	}
	if code, _ := post(frame.Bytes()); code != http.StatusTooManyRequests || limited != 3 {
		// three bad posts above counted toward the minute's limit
		t.Fatalf("post %d of a minute: %d (%d limited before)", MaxReceiptPostsPerMinute+4, code, limited)
	}
}
