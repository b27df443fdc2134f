// Package service is the HTTP side of a mirror's payouts, ready to wire: it
// takes clients' delivery receipts (POST /mirrornet/v1/receipts) and
// witnesses them, exports an epoch's evidence as a CAR
// (GET /mirrornet/v1/evidence/{fund}/{epoch}), answers the ledger status
// (GET /api/v1/ledger/{app-or-fund}) and draws the fund and earnings
// badges. The logic lives in package payouts (the Keeper), evidence and
// ledger; the node builds a [Service] with [New] and mounts [Service.Routes].
package service

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/badge"
	"github.com/mirrornet/mirrornet/internal/evidence"
	"github.com/mirrornet/mirrornet/internal/payouts"
	"github.com/mirrornet/mirrornet/protocol"
)

// MaxReceiptPostsPerMinute bounds the receipt posts one client network may
// make to one mirror per minute.
const MaxReceiptPostsPerMinute = 60

// maxPostNetworks bounds the client networks counted per minute (the
// table starts afresh every minute).
const maxPostNetworks = 1 << 16

// BadgeMaxAge is the Cache-Control max-age of the badges.
const BadgeMaxAge = 60

// Service serves a keeper over HTTP. It is safe for concurrent use.
type Service struct {
	k       *payouts.Keeper
	now     func() time.Time
	publish func([]byte) error

	mu      sync.Mutex
	posts   map[string]int // receipt posts per client network this minute
	postMin int64
}

// New returns the service of k; now is the clock, publish gossips a
// statement on the fund topic (a witness; its error is not the client's).
func New(k *payouts.Keeper, now func() time.Time, publish func([]byte) error) *Service {
	return &Service{k: k, now: now, publish: publish, posts: map[string]int{}}
}

// Routes mounts the public routes.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+protocol.HTTPReceiptsPath, s.serveReceipts)
	mux.HandleFunc("OPTIONS "+protocol.HTTPReceiptsPath, func(w http.ResponseWriter, _ *http.Request) {
		receiptsCORS(w)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET "+protocol.HTTPEvidencePath+"/{fund}/{epoch}", s.serveEvidence)
	mux.HandleFunc("GET /api/v1/ledger/{fund}", s.serveLedger)
	mux.HandleFunc("GET /badge/app/{app}/fund.svg", s.serveFundBadge)
	mux.HandleFunc("GET /badge/app/{app}/fund.json", s.serveFundBadge)
	mux.HandleFunc("GET /badge/peer/{peer}/earned.svg", s.serveEarnedBadge)
	mux.HandleFunc("GET /badge/peer/{peer}/earned.json", s.serveEarnedBadge)
}

// serveReceipts takes a framed stream of signed receipts from a client,
// witnesses them with the network the client came from, and gossips the
// witness. Receipts for any mirror are welcome: a fund's ledger counts a
// receipt only through a witness outside the credited mirror's domain.
//
// Cost bound: MaxReceiptPostsPerMinute posts a minute per client network,
// protocol.MaxReceiptsPerPost receipts of protocol.MaxReceiptSize bytes a
// post, each verified once.
func (s *Service) serveReceipts(w http.ResponseWriter, r *http.Request) {
	receiptsCORS(w)
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		JSONError(w, http.StatusBadRequest, errors.New("receipts: no client address"))
		return
	}
	network := protocol.ClientNetwork(ip)
	now := s.now()
	if !s.allowPost(network, now) {
		w.Header().Set("Retry-After", "60")
		JSONError(w, http.StatusTooManyRequests, fmt.Errorf("receipts: more than %d posts a minute from %s", MaxReceiptPostsPerMinute, network))
		return
	}
	br := bufio.NewReader(io.LimitReader(r.Body, int64(protocol.MaxReceiptsPerPost)*(protocol.MaxReceiptSize+8)+8))
	var receipts [][]byte
	for len(receipts) <= protocol.MaxReceiptsPerPost {
		raw, err := protocol.ReadFrame(br, protocol.MaxReceiptSize)
		if errors.Is(err, io.EOF) {
			break // the body's end ends the stream, as an empty frame does
		}
		if err != nil {
			JSONError(w, http.StatusBadRequest, fmt.Errorf("receipts: %w", err))
			return
		}
		if len(raw) == 0 {
			break
		}
		st, err := attest.Verify(raw, now)
		if err == nil && st.Kind != attest.KindReceipt {
			err = fmt.Errorf("%w: %s, not a receipt", attest.ErrKind, st.Kind)
		}
		if err != nil {
			JSONError(w, http.StatusBadRequest, fmt.Errorf("receipts: receipt %d does not verify: %w", len(receipts), err))
			return
		}
		receipts = append(receipts, raw)
	}
	if len(receipts) == 0 || len(receipts) > protocol.MaxReceiptsPerPost {
		JSONError(w, http.StatusBadRequest, fmt.Errorf("receipts: %d receipts (1..%d)", len(receipts), protocol.MaxReceiptsPerPost))
		return
	}
	raw, err := s.k.Witness(network, receipts, now)
	if err != nil {
		JSONError(w, http.StatusInternalServerError, err)
		return
	}
	if s.publish != nil {
		_ = s.publish(raw)
	}
	w.WriteHeader(http.StatusAccepted)
}

// receiptsCORS lets a browser's service worker (on an app's origin) post
// receipts and read the answer: receipts carry their own signatures, and
// no cookie or credential is involved.
func receiptsCORS(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type")
	h.Set("Access-Control-Max-Age", "86400")
}

func (s *Service) allowPost(network string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := now.Unix() / 60; m != s.postMin {
		s.postMin, s.posts = m, map[string]int{}
	}
	if s.posts[network] >= MaxReceiptPostsPerMinute || len(s.posts) >= maxPostNetworks {
		return false
	}
	s.posts[network]++
	return true
}

func (s *Service) serveEvidence(w http.ResponseWriter, r *http.Request) {
	epoch, err := strconv.ParseUint(r.PathValue("epoch"), 10, 64)
	if err != nil {
		JSONError(w, http.StatusBadRequest, fmt.Errorf("epoch %q is not a number", r.PathValue("epoch")))
		return
	}
	s.WriteEvidence(w, r.PathValue("fund"), epoch)
}

// WriteEvidence answers a fund epoch's evidence as a CAR (or the error).
func (s *Service) WriteEvidence(w http.ResponseWriter, fund string, epoch uint64) {
	m, set, roots, err := s.k.Export(fund, epoch, s.now())
	if err != nil {
		JSONError(w, Status(err), err)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.ipld.car; version=1")
	_ = evidence.WriteCAR(w, m, set, roots) // a client that hangs up mid-way gets a short CAR, which fails its import
}

// Status is the HTTP status of a keeper error.
func Status(err error) int {
	switch {
	case errors.Is(err, payouts.ErrUnknownFund):
		return http.StatusNotFound
	case errors.Is(err, payouts.ErrNotClosed):
		return http.StatusConflict
	}
	return http.StatusBadRequest
}

// LedgerStatus is the answer of /api/v1/ledger/{fund}: the epoch's table
// as this mirror computes it and how many mirrors signed each table.
type LedgerStatus struct {
	Fund       string              `json:"fund"`
	Epoch      uint64              `json:"epoch"`
	Table      any                 `json:"table"`
	TableHash  string              `json:"table_hash"`
	Agreements []payouts.Agreement `json:"agreements"`
	Evidence   *evidence.Report    `json:"evidence"`
}

func (s *Service) serveLedger(w http.ResponseWriter, r *http.Request) {
	st, err := s.Ledger(r.PathValue("fund"), r.URL.Query().Get("epoch"))
	if err != nil {
		JSONError(w, Status(err), err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(st)
}

// Ledger is the ledger status of a fund (or an app's maintainers' fund)
// for epochArg, or for the last closed epoch when epochArg is "".
func (s *Service) Ledger(fundID, epochArg string) (*LedgerStatus, error) {
	fund, err := s.k.FundOf(fundID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	fr := fund.Record
	var epoch uint64
	if epochArg != "" {
		if epoch, err = strconv.ParseUint(epochArg, 10, 64); err != nil {
			return nil, fmt.Errorf("epoch %q is not a number", epochArg)
		}
	} else {
		cur := fr.EpochOf(now.UnixMilli())
		if cur == 0 {
			return nil, fmt.Errorf("%w: no epoch of %s has closed", payouts.ErrNotClosed, fr.ID())
		}
		epoch = cur - 1
	}
	t, _, rep, err := s.k.Ledger(fr.ID(), epoch, now)
	if err != nil {
		return nil, err
	}
	return &LedgerStatus{Fund: fr.ID(), Epoch: epoch, Table: t, TableHash: t.Hash(), Agreements: s.k.Agreements(fr.ID(), epoch), Evidence: rep}, nil
}

// FundBadge is an app's fund badge: "100 STX/epoch · 7 mirrors paid" by
// the latest table this mirror signed.
func (s *Service) FundBadge(app string) badge.Badge {
	fund, err := s.k.FundOf(app)
	if err != nil {
		return badge.Unknown("fund")
	}
	paid := -1
	if t := s.k.LastTable(fund.Record.ID()); t != nil {
		paid = 0
		for _, p := range t.Payouts {
			if p.Amount > 0 {
				paid++
			}
		}
	}
	return badge.Fund(fund.Record.Budget, fund.Record.Unit, paid)
}

// EarnedBadge is what a peer earned in the latest tables, per unit.
func (s *Service) EarnedBadge(peerID string) badge.Badge {
	if e := s.k.Earned(peerID); len(e) > 0 {
		return badge.Earned(e)
	}
	return badge.Unknown("earned")
}

func (s *Service) serveFundBadge(w http.ResponseWriter, r *http.Request) {
	writeBadge(w, r, s.FundBadge(r.PathValue("app")))
}

func (s *Service) serveEarnedBadge(w http.ResponseWriter, r *http.Request) {
	writeBadge(w, r, s.EarnedBadge(r.PathValue("peer")))
}

// writeBadge answers with b as SVG or shields endpoint JSON, by the
// request path's extension.
func writeBadge(w http.ResponseWriter, r *http.Request, b badge.Badge) {
	var body []byte
	if strings.HasSuffix(r.URL.Path, ".json") {
		w.Header().Set("Content-Type", "application/json")
		body = b.JSON()
	} else {
		w.Header().Set("Content-Type", "image/svg+xml; charset=utf-8")
		body = b.SVG()
	}
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(BadgeMaxAge))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(body)
}

// JSONError answers {"error": err} with code, never cached.
func JSONError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
