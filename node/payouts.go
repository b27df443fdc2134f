package node

// The payouts feature wires package payouts into the node: the fund topic,
// evidence snapshots and pulls, ledger roots; the HTTP side (receipts,
// evidence export, the ledger API, the fund and earnings badges) is
// internal/payouts/service. The logic lives in internal/payouts,
// internal/evidence and internal/ledger.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/evidence"
	"github.com/mirrornet/mirrornet/internal/payouts"
	"github.com/mirrornet/mirrornet/internal/payouts/payoutsmetrics"
	payoutsvc "github.com/mirrornet/mirrornet/internal/payouts/service"
	"github.com/mirrornet/mirrornet/internal/probe/service"
	"github.com/mirrornet/mirrornet/protocol"
)

func init() { registerFeature(newPayoutsFeature) }

// maxEvidenceCAR bounds an evidence CAR pulled from a peer.
const maxEvidenceCAR = 1 << 30

type payoutsFeature struct {
	baseFeature
	n    *Node
	k    *payouts.Keeper
	svc  *payoutsvc.Service
	pull chan *attest.Statement
}

// LedgerStatus is the answer of /api/v1/ledger/{fund}.
type LedgerStatus = payoutsvc.LedgerStatus

// httpURLOf is the HTTP URL a mirror announced in its latest liveness
// statement, or "".
func (n *Node) httpURLOf(p peer.ID) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	m, ok := n.view.Mirror(p, n.clock())
	if !ok || m.Liveness == nil {
		return ""
	}
	return m.Liveness.HTTP
}

// lazyReleases reads the release feature's book (built after this one).
type lazyReleases struct{ n *Node }

func (l lazyReleases) book() *releaseFeature {
	for _, f := range l.n.features {
		if rf, ok := f.(*releaseFeature); ok {
			return rf
		}
	}
	return nil
}

func (l lazyReleases) Maintainers(app string) (protocol.MaintainerSet, bool) {
	rf := l.book()
	if rf == nil {
		return protocol.MaintainerSet{}, false
	}
	rf.mu.Lock()
	defer rf.mu.Unlock()
	return rf.book.Maintainers(app)
}

func (l lazyReleases) Raw(app string) [][]byte {
	rf := l.book()
	if rf == nil {
		return nil
	}
	rf.mu.Lock()
	defer rf.mu.Unlock()
	return rf.book.Raw(app)
}

// lazyDomains places peers with the probe feature's placer.
type lazyDomains struct{ n *Node }

func (l lazyDomains) Domain(p peer.ID) string {
	if pf := l.n.probeFeatureOf(); pf != nil {
		return pf.svc.Domain(p)
	}
	return ""
}

func newPayoutsFeature(n *Node) (feature, error) {
	pc, err := service.ProfileConfig(n.prof.Name, n.cfg.ProbeK)
	if err != nil {
		return nil, fmt.Errorf("node: probes: %w", err)
	}
	rc := pc.Runner
	cfg := payouts.DefaultConfig()
	cfg.ProbeEpoch, cfg.K = rc.Config.EpochLength, rc.Config.K
	cfg.Grace = 2 * rc.Config.EpochLength
	if n.cfg.DataDir != "" {
		cfg.Dir = filepath.Join(n.cfg.DataDir, "evidence")
	}
	k, err := payouts.New(cfg, n.key, lazyReleases{n}, lazyDomains{n})
	if err != nil {
		return nil, fmt.Errorf("node: payouts: %w", err)
	}
	if err := n.registry.Register(payoutsmetrics.NewCollector(k)); err != nil {
		return nil, fmt.Errorf("node: payouts metrics: %w", err)
	}
	f := &payoutsFeature{n: n, k: k, pull: make(chan *attest.Statement, 16)}
	f.svc = payoutsvc.New(k, n.clock, func(raw []byte) error {
		if err := n.publish(protocol.TopicFund, raw); err != nil {
			n.log.Debug("publish receipt witness", "err", err)
		}
		return nil
	})
	return f, nil
}

func (f *payoutsFeature) name() string { return "payouts" }

func (f *payoutsFeature) topics() []topicSpec {
	return []topicSpec{{topic: protocol.TopicFund, validate: f.validate}}
}

func (f *payoutsFeature) statements() [][]byte { return f.k.Statements() }

func (f *payoutsFeature) applySynced(raw []byte) bool {
	if protocol.IsSignedRecord(raw) {
		_, err := f.k.AddFund(raw, f.n.clock())
		return err == nil
	}
	st, err := attest.Verify(raw, f.n.clock())
	if st == nil || !isPayoutKind(st.Kind) {
		return false
	}
	_ = err // age does not matter for synced payout statements
	f.apply(st)
	return true
}

func isPayoutKind(k attest.Kind) bool {
	return k == attest.KindPayout || k == attest.KindLedgerRoot || k == attest.KindWitness
}

// errNotNewer marks a payout statement older than one already held.
var errNotNewer = errors.New("node: payout statement not newer than the one held")

func (f *payoutsFeature) validate(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	err := f.add(msg.Data)
	v := attest.Classify(err)
	switch {
	case err == nil:
		v = attest.Accept
	case from == f.n.id && (errors.Is(err, errNotNewer) || errors.Is(err, payouts.ErrRollback)):
		// Our own statement, kept before it was published.
		v, err = attest.Accept, nil
	case errors.Is(err, errNotNewer), errors.Is(err, payouts.ErrRollback), errors.Is(err, payouts.ErrNoKey):
		v = attest.Ignore
	}
	if f.n.metrics != nil {
		f.n.metrics.statements.WithLabelValues("payouts", v.String(), payoutReason(err)).Inc()
	}
	if v != attest.Accept {
		f.n.log.Debug("payout statement not accepted", "from", from, "verdict", v, "err", err)
	}
	return toResult(v)
}

func payoutReason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, errNotNewer):
		return "not_newer"
	case errors.Is(err, payouts.ErrRollback):
		return "rollback"
	case errors.Is(err, payouts.ErrNoKey):
		return "unknown_app"
	case errors.Is(err, attest.ErrThreshold):
		return "below_threshold"
	}
	return attest.Reason(err)
}

func (f *payoutsFeature) add(raw []byte) error {
	now := f.n.clock()
	if protocol.IsSignedRecord(raw) {
		_, err := f.k.AddFund(raw, now)
		return err
	}
	st, err := attest.Verify(raw, now)
	if err != nil {
		return err
	}
	if !isPayoutKind(st.Kind) {
		return fmt.Errorf("%w: %s on the fund topic", attest.ErrKind, st.Kind)
	}
	if !f.apply(st) {
		return errNotNewer
	}
	return nil
}

// apply keeps a verified payout statement and reports whether it was new.
func (f *payoutsFeature) apply(st *attest.Statement) bool {
	switch st.Kind {
	case attest.KindPayout:
		return f.k.AddPayout(st)
	case attest.KindWitness:
		return f.k.Observe(st)
	case attest.KindLedgerRoot:
		if f.k.AddRoot(st) {
			select {
			case f.pull <- st:
			default: // a pull is queued already; the next root asks again
			}
		}
		return true
	}
	return false
}

func (f *payoutsFeature) run(ctx context.Context) {
	if n, err := f.k.Load(f.n.clock()); err != nil {
		f.n.log.Warn("evidence on disk not read", "err", err)
	} else if n > 0 {
		f.n.log.Info("evidence read back from disk", "statements", n)
	}
	defer func() {
		if err := f.k.Save(f.n.clock()); err != nil {
			f.n.log.Warn("evidence not saved", "err", err)
		}
	}()
	f.publishPayout()
	every := min(f.k.Config().ProbeEpoch/5, time.Minute)
	t := time.NewTicker(max(every, f.n.prof.Heartbeat))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case st := <-f.pull:
			f.pullEvidence(ctx, st)
		case <-t.C:
			now := f.n.clock()
			f.snapshot(now)
			f.k.Prejudge(now)
			for _, raw := range f.k.Due(now) {
				if err := f.n.publish(protocol.TopicFund, raw); err != nil {
					f.n.log.Debug("publish ledger root", "err", err)
				}
			}
			f.k.Prune(now)
			if err := f.k.Save(now); err != nil {
				f.n.log.Warn("evidence not saved", "err", err)
			}
		}
	}
}

// snapshot keeps the liveness and probe statements the node holds as
// evidence (one liveness sample per mirror per probe round). The view's
// liveness statements were verified when they arrived: the evidence keeps
// those very statements (one decoded copy in memory, not two, and no
// signature checked again every tick); the features' statements are
// verified here.
func (f *payoutsFeature) snapshot(now time.Time) {
	for _, st := range f.n.view.Held() {
		if !f.k.Seen(st.Raw) {
			f.k.Observe(st)
		}
	}
	// The holdings statements the samples name by digest (the keeper
	// keeps one per subject and digest).
	for _, st := range f.n.view.HeldHoldings() {
		f.k.Observe(st)
	}
	for _, raw := range f.n.featureStatements() {
		if protocol.IsSignedRelease(raw) || protocol.IsSignedRecord(raw) || f.k.Seen(raw) {
			continue
		}
		if st, err := attest.Verify(raw, now); st != nil && (err == nil || errors.Is(err, attest.ErrTooOld)) {
			f.k.Observe(st)
		}
	}
}

// publishPayout signs and gossips the operator's payout addresses.
func (f *payoutsFeature) publishPayout() {
	if len(f.n.cfg.Payout) == 0 {
		return
	}
	now := f.n.clock()
	raw, err := attest.SignPayout(f.n.key, protocol.PayoutAddress{Peer: f.n.id.String(), Seq: uint64(now.UnixMilli()), Time: now.UnixMilli(), Addresses: f.n.cfg.Payout})
	if err != nil {
		f.n.log.Error("sign payout address", "err", err)
		return
	}
	st, err := attest.Verify(raw, now)
	if err != nil {
		f.n.log.Error("verify own payout address", "err", err)
		return
	}
	f.k.AddPayout(st)
	if err := f.n.publish(protocol.TopicFund, raw); err != nil {
		f.n.log.Debug("publish payout address", "err", err)
	}
}

// pullEvidence fetches the evidence a peer signed a different root over,
// from its HTTP side, and merges what verifies.
func (f *payoutsFeature) pullEvidence(ctx context.Context, st *attest.Statement) {
	base := f.n.httpURLOf(st.Signer)
	if base == "" {
		return
	}
	lr := st.LedgerRoot
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	url := fmt.Sprintf("%s%s/%s/%d", base, protocol.HTTPEvidencePath, lr.Fund, lr.Epoch)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return
	}
	hc := http.DefaultClient
	if f.n.httpTransport != nil {
		hc = &http.Client{Transport: f.n.httpTransport}
	}
	resp, err := hc.Do(req)
	if err != nil {
		f.n.log.Debug("pull evidence", "peer", st.Signer, "err", err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	m, s, _, err := evidence.ReadCAR(io.LimitReader(resp.Body, maxEvidenceCAR))
	if err != nil || m.Fund != lr.Fund || m.Epoch != lr.Epoch {
		f.n.log.Debug("pulled evidence refused", "peer", st.Signer, "err", err)
		return
	}
	n := f.k.Merge(s, f.n.clock())
	f.n.log.Debug("merged evidence", "peer", st.Signer, "fund", lr.Fund, "epoch", lr.Epoch, "new", n)
}

func (f *payoutsFeature) routes(mux *http.ServeMux) { f.svc.Routes(mux) }

func (f *payoutsFeature) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /admin/v1/fund", f.adminFund)
	mux.HandleFunc("GET /admin/v1/evidence", f.adminEvidence)
}

func (f *payoutsFeature) adminFund(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Fund []byte `json:"fund"`
	}
	if !decodeAdmin(w, r, &req) {
		return
	}
	fund, err := f.k.AddFund(req.Fund, f.n.clock())
	if err != nil {
		adminError(w, http.StatusBadRequest, err)
		return
	}
	if err := f.n.publish(protocol.TopicFund, req.Fund); err != nil {
		f.n.log.Debug("publish fund", "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"fund": fund.Record.ID(), "app": fund.Record.App, "version": fund.Record.Version})
}

func (f *payoutsFeature) adminEvidence(w http.ResponseWriter, r *http.Request) {
	epoch, err := strconv.ParseUint(r.URL.Query().Get("epoch"), 10, 64)
	if err != nil {
		adminError(w, http.StatusBadRequest, fmt.Errorf("epoch %q is not a number", r.URL.Query().Get("epoch")))
		return
	}
	f.svc.WriteEvidence(w, r.URL.Query().Get("fund"), epoch)
}

// Get downloads an admin route's answer into w.
func (c *AdminClient) Get(ctx context.Context, path string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://admin"+path, nil)
	if err != nil {
		return err
	}
	return c.do(req, w)
}
