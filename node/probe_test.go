package node

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/probe"
	"github.com/mirrornet/mirrornet/internal/probe/probetest"
	"github.com/mirrornet/mirrornet/protocol"
)

// newProbeCluster is newCluster with each node's HTTP side on (probes
// fetch from gateways) and the peer IDs known before the nodes start, so
// that setup can write label files or set per-node options.
func newProbeCluster(t testing.TB, n int, setup func(i int, ids []peer.ID, cfg *Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, mn: mocknet.New()}
	tc := testConfig(t)
	c.prof = tc.profile()
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.Close()
		}
		c.mn.Close()
	})
	keys := make([]crypto.PrivKey, n)
	ids := make([]peer.ID, n)
	for i := range n {
		sk, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = sk
		addr, _ := ma.NewMultiaddr(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 10000+i))
		h, err := c.mn.AddPeer(sk, addr)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = h.ID()
	}
	if err := c.mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		cfg := testConfig(t)
		cfg.HTTPAddr = "127.0.0.1:0"
		if setup != nil {
			setup(i, ids, &cfg)
		}
		nd, err := New(cfg, WithHost(c.mn.Host(ids[i]), keys[i]), func(o *options) {
			if inABubble(t) {
				// Everything in memory: a goroutine blocked in real
				// network I/O would keep virtual time from moving.
				o.listenAdmin, o.listenHTTP, o.httpTransport = listenMem, memHTTP.listen, memHTTP.transport()
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, nd)
	}
	return c
}

// probeGet fetches url and decodes JSON into v (when v is not nil); it returns
// the response and the body.
func probeGet(t testing.TB, url string, v any) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, done := transportFor(req.URL.Host)
	defer done()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v\n%s", url, err, body)
		}
	}
	return resp, body
}

func evidenceOf(t testing.TB, n *Node) map[string]MirrorEvidence {
	t.Helper()
	var rep EvidenceReport
	probeGet(t, n.HTTPURL()+EvidencePath, &rep)
	out := map[string]MirrorEvidence{}
	for _, m := range rep.Mirrors {
		out[m.PeerID] = m
	}
	return out
}

// allVerified reports whether every observer's evidence says every target
// is verified.
func allVerified(t testing.TB, observers, targets []*Node) (bool, string) {
	for _, o := range observers {
		ev := evidenceOf(t, o)
		for _, tg := range targets {
			if s := ev[tg.ID().String()].State; s != string(probe.StateVerified) {
				return false, fmt.Sprintf("%s sees %s as %q", o.ID().ShortString(), tg.ID().ShortString(), s)
			}
		}
	}
	return true, ""
}

func bundleOf(t testing.TB, n *Node, c cid.Cid) BundleReport {
	t.Helper()
	var rep BundleReport
	resp, body := probeGet(t, n.HTTPURL()+BundlePathPrefix+c.String(), &rep)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("bundle report: %s: %s", resp.Status, body)
	}
	return rep
}

// badgeOf fetches a badge's JSON and SVG and checks both are well formed;
// it returns the shields.io message.
func badgeOf(t testing.TB, n *Node, path string) string {
	t.Helper()
	var js struct {
		SchemaVersion int    `json:"schemaVersion"`
		Label         string `json:"label"`
		Message       string `json:"message"`
	}
	resp, body := probeGet(t, n.HTTPURL()+path+".json", &js)
	if resp.StatusCode != http.StatusOK || js.SchemaVersion != 1 || js.Message == "" {
		t.Fatalf("badge %s.json: %s %s", path, resp.Status, body)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") {
		t.Errorf("badge %s.json: Cache-Control %q, want a short max-age", path, cc)
	}
	before := js.Message
	resp, body = probeGet(t, n.HTTPURL()+path+".svg", nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "image/svg+xml") {
		t.Fatalf("badge %s.svg: %s %s", path, resp.Status, resp.Header.Get("Content-Type"))
	}
	var svg struct {
		XMLName xml.Name
	}
	if err := xml.Unmarshal(body, &svg); err != nil || svg.XMLName.Local != "svg" {
		t.Fatalf("badge %s.svg is not SVG (%v): %.200s", path, err, body)
	}
	// A probe round may end between the two requests and move the
	// figures: the SVG shows the message of the JSON before or after it.
	probeGet(t, n.HTTPURL()+path+".json", &js)
	if !strings.Contains(string(body), probeXMLEscape(before)) && !strings.Contains(string(body), probeXMLEscape(js.Message)) {
		t.Errorf("badge %s.svg shows neither %q nor %q", path, before, js.Message)
	}
	return before
}

func probeXMLEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// publishAndReplicate publishes a bundle on origin and has every follower
// follow it; it returns once everyone holds it and every node sees every
// holder announce it.
func publishAndReplicate(t *testing.T, c *cluster, origin *Node, followers ...*Node) cid.Cid {
	t.Helper()
	res := publish(t, origin, writeTree(t))
	root, err := cid.Decode(res.CID)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "origin announces the bundle", func() (bool, string) { return announces(c.nodes, origin, root) })
	for _, n := range followers {
		if err := n.Follow(root); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range followers {
		waitFor(t, 60*time.Second, "follower holds the bundle", func() (bool, string) { return holds(n, root) })
		waitFor(t, 20*time.Second, "follower announces the bundle", func() (bool, string) { return announces(c.nodes, n, root) })
	}
	return root
}

// loseBlocks takes n's block store away behind its back (closes it, as a
// failed disk would): the bundle list still says the bundle is held (and
// liveness attests it), but the gateway cannot serve a block. A disk that
// lost its data silently. (Damaging the blocks instead would not do: the
// mirror finds a corrupt block on the first read and fetches it again.)
func loseBlocks(t *testing.T, n *Node) {
	t.Helper()
	if err := n.store.Close(); err != nil {
		t.Fatalf("lose blocks: %v", err)
	}
}

func TestProbesVerifyMirrorsAndCatchALiar(t *testing.T) {
	inBubble(t, testProbesVerifyMirrorsAndCatchALiar)
}

func testProbesVerifyMirrorsAndCatchALiar(t *testing.T) {
	c := newProbeCluster(t, 3, nil)
	c.connectRing(1)
	a, b, liar := c.nodes[0], c.nodes[1], c.nodes[2]
	waitFor(t, 20*time.Second, "all alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })
	root := publishAndReplicate(t, c, a, b, liar)

	took := waitFor(t, 30*time.Second, "every mirror verified by every mirror", func() (bool, string) { return allVerified(t, c.nodes, c.nodes) })
	t.Logf("all three verified %s after the last follower announced (probe round %s)", took, a.probeFeatureOf().svc.Config().Interval)

	// Three holders on one host: three verified copies, one failure domain.
	rep := bundleOf(t, a, root)
	if rep.CID != root.String() || rep.EffectiveRedundancy != 1 || len(rep.Holders) != 3 {
		t.Fatalf("bundle report %+v: want 3 holders, effective redundancy 1", rep)
	}
	// Many bundles in one pass (the dashboard) report what one does.
	unknown := "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52z"
	reps := a.probeFeatureOf().svc.Bundles([]string{root.String(), unknown})
	if got := reps[root.String()]; got.EffectiveRedundancy != rep.EffectiveRedundancy || !slices.Equal(got.Holders, rep.Holders) {
		t.Fatalf("Bundles: %+v, Bundle: %+v", got, rep)
	}
	if got := reps[unknown]; got.CID != unknown || len(got.Holders) != 0 || got.EffectiveRedundancy != 0 {
		t.Fatalf("Bundles for a bundle nobody holds: %+v", got)
	}
	for _, h := range rep.Holders {
		if h.State != "verified" || h.Domain != "net:127.0.0.0/24" {
			t.Errorf("holder %+v: want verified in net:127.0.0.0/24", h)
		}
	}
	if got := badgeOf(t, a, "/badge/bundle/"+root.String()+"/mirrors"); got != "3 verified · 1 domain" {
		t.Errorf("bundle badge %q", got)
	}
	if got := badgeOf(t, a, "/badge/peer/"+liar.ID().String()+"/backup"); !strings.HasPrefix(got, "verified") {
		t.Errorf("peer badge %q, want verified", got)
	}
	// P5 is refreshed at the end of each probe round, after the verdict
	// that status reports live.
	waitFor(t, 30*time.Second, "positive P5 for a verified mirror", func() (bool, string) {
		s := a.probeFeatureOf().appScore(liar.ID())
		return s > 0, fmt.Sprintf("P5 %v", s)
	})

	// Sync carries the evidence: a mirror connected to nobody, handed
	// what A serves to a sync request, verifies all three at once.
	d := c.add()
	sts := a.syncStatements()
	taken := 0
	for _, raw := range sts {
		if ok, _ := d.applySynced(raw, ""); ok {
			taken++
		}
	}
	if len(a.probeFeatureOf().statements()) == 0 || taken == 0 {
		t.Fatalf("sync: A offers %d statements, D took %d", len(sts), taken)
	}
	for _, n := range []*Node{a, b, liar} {
		if st := d.probeFeatureOf().svc.Status(n.ID(), d.clock()); st.State != probe.StateVerified {
			t.Errorf("after sync, D sees %s as %s: %+v", n.ID().ShortString(), st.State, st)
		}
	}
	d.Close()

	// A bad CID is a clear 400.
	var e struct{ Error string }
	resp, body := probeGet(t, a.HTTPURL()+BundlePathPrefix+"not-a-cid", &e)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(e.Error, `"not-a-cid"`) || !strings.Contains(e.Error, "not a CID") {
		t.Errorf("bad CID: %s %s", resp.Status, body)
	}

	// The liar keeps attesting the bundle but has lost its blocks.
	loseBlocks(t, liar)
	if ok, detail := holds(liar, root); !ok {
		t.Fatalf("the liar's store should still claim the bundle: %s", detail)
	}
	caught := time.Now()
	honest := []*Node{a, b}
	waitFor(t, 60*time.Second, "liar degraded or failing at the honest mirrors", func() (bool, string) {
		for _, o := range honest {
			s := evidenceOf(t, o)[liar.ID().String()].State
			if s != string(probe.StateDegraded) && s != string(probe.StateFailing) {
				return false, fmt.Sprintf("%s sees the liar as %q", o.ID().ShortString(), s)
			}
		}
		return true, ""
	})
	t.Logf("liar caught %s after losing its blocks", time.Since(caught).Round(time.Millisecond))
	if ok, detail := allVerified(t, honest, honest); !ok {
		t.Errorf("honest mirrors blamed: %s", detail)
	}
	if got := badgeOf(t, a, "/badge/bundle/"+root.String()+"/mirrors"); got != "2 verified · 1 domain" {
		t.Errorf("bundle badge after the liar is caught: %q", got)
	}
	if got := badgeOf(t, a, "/badge/peer/"+liar.ID().String()+"/backup"); strings.HasPrefix(got, "verified") {
		t.Errorf("peer badge of the liar still %q", got)
	}
	rep = bundleOf(t, a, root)
	for _, h := range rep.Holders {
		if h.PeerID == liar.ID().String() && h.State == "verified" {
			t.Errorf("bundle report still lists the liar as verified: %+v", rep)
		}
	}
	waitFor(t, 10*time.Second, "negative P5 for the liar", func() (bool, string) {
		s := a.probeFeatureOf().appScore(liar.ID())
		return s < 0, fmt.Sprint(s)
	})
}

// TestProbesLabelsAndAuto: with a label file putting the mirrors in three
// domains, effective redundancy is 3; a mirror with --auto in a new domain
// follows the under-mirrored bundle by itself, and one in a domain the
// bundle already has does not.
func TestProbesLabelsAndAuto(t *testing.T) { inBubble(t, testProbesLabelsAndAuto) }

func testProbesLabelsAndAuto(t *testing.T) {
	labels := filepath.Join(t.TempDir(), "labels.txt")
	c := newProbeCluster(t, 4, func(i int, ids []peer.ID, cfg *Config) {
		if i == 0 {
			text := fmt.Sprintf("# test racks\n%s rack-a\n%s rack-b\n%s rack-c\n%s rack-a\n", ids[0], ids[1], ids[2], ids[3])
			if err := os.WriteFile(labels, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cfg.Labels = labels
		cfg.Auto = i >= 2 // C adds rack-c; D is in rack-a, which A already covers
	})
	c.connectRing(2)
	a, b, cc, d := c.nodes[0], c.nodes[1], c.nodes[2], c.nodes[3]
	waitFor(t, 20*time.Second, "all alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })

	root := publishAndReplicate(t, c, a, b)
	waitFor(t, 60*time.Second, "C follows the bundle by itself", func() (bool, string) { return holds(cc, root) })
	holders := []*Node{a, b, cc}
	waitFor(t, 30*time.Second, "three holders verified everywhere", func() (bool, string) { return allVerified(t, c.nodes, holders) })

	for _, n := range c.nodes {
		rep := bundleOf(t, n, root)
		if rep.EffectiveRedundancy != 3 || len(rep.Holders) != 3 {
			t.Errorf("%s: bundle report %+v: want 3 holders in 3 domains", n.ID().ShortString(), rep)
		}
	}
	if got := badgeOf(t, d, "/badge/bundle/"+root.String()+"/mirrors"); got != "3 verified · 3 domains" {
		t.Errorf("bundle badge %q", got)
	}
	if dom := evidenceOf(t, a)[d.ID().String()].Domain; dom != "label:rack-a@net:127.0.0.0/24" {
		t.Errorf("D's domain %q, want label:rack-a@net:127.0.0.0/24", dom)
	}

	// D has seen all of that and checked twice more since: it must not
	// have followed (its domain adds nothing, and the target is met).
	pf := d.probeFeatureOf()
	runs := pf.svc.AutoRuns()
	waitFor(t, 30*time.Second, "D runs two more auto checks", func() (bool, string) {
		got := pf.svc.AutoRuns()
		return got >= runs+2, fmt.Sprint(got)
	})
	if bs := d.Bundles(); len(bs) != 0 {
		t.Errorf("D (rack-a, like A) followed %+v", bs)
	}
}

// TestProbeValidator checks the gossip verdicts: a forged result published
// by a peer without validators is rejected (and counted), a genuine result
// that this node's view cannot place is ignored, and a statement of another
// kind on the probe topic is rejected.
func TestProbeValidator(t *testing.T) {
	c := newProbeCluster(t, 2, nil)
	c.connectRing(1)
	a, b := c.nodes[0], c.nodes[1]
	waitFor(t, 20*time.Second, "both alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })
	pf := a.probeFeatureOf()

	// A genuine signature on a result about a bundle B never attested.
	sk, _, _ := crypto.GenerateEd25519Key(nil)
	obs, _ := peer.IDFromPrivateKey(sk)
	now := a.clock()
	// A time whose challenge is a descent: a canary pass needs no receipt.
	for probetest.IsCanary(now, pf.svc.Config().EpochLength, b.ID(), obs) {
		now = now.Add(-pf.svc.Config().EpochLength / protocol.ProbeRoundsPerEpoch)
	}
	res := probetest.Result(t, obs, probetest.Spec{Target: b.ID(), Bundle: "bafkqaaa", Outcome: protocol.OutcomeFail,
		At: now, EpochLength: pf.svc.Config().EpochLength, Seq: 1})
	genuine, err := attest.SignProbe(sk, res)
	if err != nil {
		t.Fatal(err)
	}
	// A pass without B's receipt, and one with a receipt the observer
	// made itself: provably not what happened.
	res.Outcome = protocol.OutcomePass
	noReceipt := probetest.Forge(t, sk, res)
	res.Receipts = probetest.Result(t, obs, probetest.Spec{Target: b.ID(), Bundle: "bafkqaaa", Outcome: protocol.OutcomePass,
		At: now, EpochLength: pf.svc.Config().EpochLength, Seq: 1, TargetKey: sk}).Receipts
	selfMade := probetest.Forge(t, sk, res)
	forged := append([]byte{}, genuine...)
	forged[len(forged)-3] ^= 0x40 // inside the signature
	liveness, err := attest.SignLiveness(sk, protocol.Liveness{Peer: obs.String(), State: protocol.StateUp, Seq: 1, Time: now.UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	msg := func(data []byte) *pubsub.Message { return &pubsub.Message{Message: &pb.Message{Data: data}} }
	for _, tc := range []struct {
		name string
		data []byte
		want pubsub.ValidationResult
	}{
		{"forged", forged, pubsub.ValidationReject},
		{"garbage", []byte("not an envelope"), pubsub.ValidationReject},
		{"liveness on the probe topic", liveness, pubsub.ValidationReject},
		{"pass without a receipt", noReceipt, pubsub.ValidationReject},
		{"pass with a self-made receipt", selfMade, pubsub.ValidationReject},
		{"genuine but not held", genuine, pubsub.ValidationIgnore},
	} {
		if got := pf.validate(context.Background(), b.ID(), msg(tc.data)); got != tc.want {
			t.Errorf("%s: verdict %v, want %v", tc.name, got, tc.want)
		}
	}
	// Refusals are counted by reason: a receipt that is not the target's
	// is "receipt", a result the evidence cannot place is "not_held".
	for reason, verdict := range map[string]string{"receipt": "reject", "not_held": "ignore"} {
		if got := probeCounter(t, a, "mirrornet_probe_results_total", map[string]string{"verdict": verdict, "reason": reason}); got < 1 {
			t.Errorf("mirrornet_probe_results_total{verdict=%q,reason=%q} = %v, want >= 1", verdict, reason, got)
		}
	}

	// Over gossip: a peer running plain gossipsub (no validators) pushes
	// forged results at B; B rejects them and counts them.
	ah, err := c.mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// It speaks mirrornet's gossip dialect: unsigned gossipsub messages
	// with content-addressed IDs (see protocol's package doc).
	ps, err := pubsub.NewGossipSub(ctx, ah, pubsub.WithFloodPublish(true),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(m *pb.Message) string {
			h := sha256.Sum256(m.Data)
			return string(h[:])
		}))
	if err != nil {
		t.Fatal(err)
	}
	topic, err := ps.Join(protocol.TopicProbe)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.mn.ConnectPeers(ah.ID(), b.ID()); err != nil {
		t.Fatal(err)
	}
	rejected := func() float64 {
		return probeCounter(t, b, "mirrornet_probe_results_total", map[string]string{"verdict": "reject"})
	}
	before := rejected()
	i := 0
	waitFor(t, 20*time.Second, "B rejects the forged result", func() (bool, string) {
		// Each attempt is a new message (gossipsub drops repeats).
		f := append([]byte{}, forged...)
		f[len(f)-4] ^= byte(i + 1)
		i++
		_ = topic.Publish(ctx, f)
		got := rejected()
		return got > before, fmt.Sprintf("rejected %v", got)
	})
	if v := probeCounter(t, b, "mirrornet_statements_total", map[string]string{"kind": "unknown", "verdict": "reject"}) +
		probeCounter(t, b, "mirrornet_statements_total", map[string]string{"kind": "probe", "verdict": "reject"}); v == 0 {
		t.Error("the forged result is not in mirrornet_statements_total")
	}
}

// probeCounter sums the samples of a counter whose labels include want
// (name=value pairs); the node tests of other subsystems use it too.
func probeCounter(t testing.TB, n *Node, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := n.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func TestProbeMalformedDomainFiles(t *testing.T) {
	dir := t.TempDir()
	badLabels := filepath.Join(dir, "labels.txt")
	os.WriteFile(badLabels, []byte("# racks\nnot-a-peer rack-a\n"), 0o644)
	badASN := filepath.Join(dir, "asn.tsv")
	os.WriteFile(badASN, []byte("1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n1.0.1.0\tnonsense\t1\tCN\tX\n"), 0o644)
	for _, tc := range []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"labels", func(c *Config) { c.Labels = badLabels }, badLabels + ":2"},
		{"asn-db", func(c *Config) { c.ASNDB = badASN }, badASN + ":2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
			tc.set(&cfg)
			n, err := New(cfg)
			if err == nil {
				n.Close()
				t.Fatal("New accepted a malformed file")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--"+tc.name) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line naming --%s and %s", err, tc.name, tc.want)
			}
		})
	}
}
