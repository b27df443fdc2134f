package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Payout statements: funds, payout addresses, delivery receipts and ledger
// roots. See the package documentation's "Funds and payouts" section.
const (
	TopicFund = "/mirrornet/fund/1"

	DomainFund       = "mirrornet-fund"
	DomainPayout     = "mirrornet-payout"
	DomainReceipt    = "mirrornet-receipt"
	DomainLedgerRoot = "mirrornet-ledger-root"
	DomainApproval   = "mirrornet-ledger-approval"
	DomainWitness    = "mirrornet-receipt-witness"

	PayloadFund       = "/mirrornet/fund/1"
	PayloadPayout     = "/mirrornet/payout/1"
	PayloadReceipt    = "/mirrornet/receipt/1"
	PayloadLedgerRoot = "/mirrornet/ledger-root/1"
	PayloadApproval   = "/mirrornet/ledger-approval/1"
	PayloadWitness    = "/mirrornet/receipt-witness/1"

	// MaxPayoutAddresses bounds the units one payout statement names.
	MaxPayoutAddresses = 16
	// MaxReceiptBytes bounds the bytes one receipt may claim (1 TiB): a
	// sanity bound, the ledger's caps are far lower.
	MaxReceiptBytes = 1 << 40
	// HTTPReceiptsPath accepts delivery receipts from clients (POST, a
	// framed stream of signed receipts, at most MaxReceiptsPerPost).
	HTTPReceiptsPath = "/mirrornet/v1/receipts"
	// HTTPEvidencePath + "/{fund}/{epoch}" serves a closed epoch's evidence
	// as a CAR (see package internal/evidence), for peers whose ledger
	// root differs and for anyone who wants to recompute the ledger.
	HTTPEvidencePath = "/mirrornet/v1/evidence"
	// MaxReceiptsPerPost bounds one POST to HTTPReceiptsPath.
	MaxReceiptsPerPost = 64
	// FundIDPrefix starts every fund ID; see [DeriveFundID].
	FundIDPrefix = "fund-"
)

var (
	unitRE    = regexp.MustCompile(`^[A-Z][A-Z0-9]{0,11}$`)
	addressRE = regexp.MustCompile(`^[A-Za-z0-9:._-]{1,128}$`)
)

// ValidUnit reports whether s is a unit: 1-12 upper-case letters and digits,
// starting with a letter ("STX", "USD", "USDC").
func ValidUnit(s string) bool { return unitRE.MatchString(s) }

// FundWeights are the relative weights of uptime, diversity and traffic in
// a fund's payouts; only their ratios matter.
type FundWeights struct {
	Uptime    uint32 `json:"uptime"`
	Diversity uint32 `json:"diversity"`
	Traffic   uint32 `json:"traffic"`
}

// Fund is a fund record: "pay Budget Unit per epoch of EpochMS, starting at
// Start, to the mirrors of App that meet the eligibility rules, by these
// weights". It is signed like a release (see [SignedRecord]) by a threshold
// of Funders, or, when Funders is nil, of the app's maintainers at the time
// (the release keys). A fund is identified by [DeriveFundID] of its app and
// funders; its Version rises with every change, the newest version wins and
// a lower one is refused (rollback).
type Fund struct {
	App     string `json:"app"`
	Version uint64 `json:"version"`
	// Funders is a community funder's own keys (a bounty); nil for a fund
	// of the app's maintainers.
	Funders *MaintainerSet `json:"funders,omitempty"`
	// Unit and Budget: an integer amount per epoch ("100 STX").
	Unit   string `json:"unit"`
	Budget uint64 `json:"budget"`
	// Start is when epoch 0 begins, EpochMS how long an epoch lasts (Unix
	// milliseconds). Epoch e covers [Start+e*EpochMS, Start+(e+1)*EpochMS).
	Start   int64 `json:"start"`
	EpochMS int64 `json:"epoch_ms"`
	// MinVerified is the minimum share of an epoch's probe rounds, in
	// thousandths, in which a mirror must have been verified to be paid.
	MinVerified uint32 `json:"min_verified"`
	// RedundancyTarget is how many independent failure domains the app
	// needs; copies beyond it are worth less (see internal/ledger).
	RedundancyTarget uint32      `json:"redundancy_target"`
	Weights          FundWeights `json:"weights"`
	// KeyCap and NetworkCap bound the receipt bytes counted per client key
	// and per client network (IPv4 /24, IPv6 /48), per mirror and epoch.
	KeyCap     uint64 `json:"key_cap"`
	NetworkCap uint64 `json:"network_cap"`
	// Time is the signing time (Unix ms).
	Time int64 `json:"time"`
}

// Validate checks the record's shape.
func (f *Fund) Validate() error {
	switch {
	case !IsAppID(f.App):
		return fmt.Errorf("%w: app %q is not an app ID", ErrInvalid, f.App)
	case f.Version == 0:
		return fmt.Errorf("%w: version is zero", ErrInvalid)
	case !ValidUnit(f.Unit):
		return fmt.Errorf("%w: unit %q is not 1-12 upper-case letters or digits", ErrInvalid, f.Unit)
	case f.Budget == 0:
		return fmt.Errorf("%w: budget is zero", ErrInvalid)
	case f.Start <= 0:
		return fmt.Errorf("%w: start is not positive", ErrInvalid)
	case f.EpochMS < 60_000:
		return fmt.Errorf("%w: epoch of %d ms is shorter than a minute", ErrInvalid, f.EpochMS)
	case f.MinVerified > 1000:
		return fmt.Errorf("%w: min_verified %d above 1000", ErrInvalid, f.MinVerified)
	case f.RedundancyTarget == 0:
		return fmt.Errorf("%w: redundancy_target is zero", ErrInvalid)
	case f.Weights == FundWeights{}:
		return fmt.Errorf("%w: all weights are zero", ErrInvalid)
	case f.KeyCap == 0 || f.NetworkCap == 0:
		return fmt.Errorf("%w: key_cap and network_cap must be positive", ErrInvalid)
	case f.Time <= 0:
		return fmt.Errorf("%w: time is not positive", ErrInvalid)
	}
	if f.Funders != nil {
		if err := f.Funders.Validate(); err != nil {
			return fmt.Errorf("funders: %w", err)
		}
	}
	return nil
}

// ID is the fund's identity: [DeriveFundID] of its app and funders.
func (f *Fund) ID() string { return DeriveFundID(f.App, f.Funders) }

// EpochStart is the first millisecond of epoch e.
func (f *Fund) EpochStart(e uint64) int64 { return f.Start + int64(e)*f.EpochMS }

// EpochOf is the epoch that contains Unix millisecond t (0 before Start).
func (f *Fund) EpochOf(t int64) uint64 {
	if t < f.Start {
		return 0
	}
	return uint64((t - f.Start) / f.EpochMS)
}

// DeriveFundID is "fund-" + hex(sha256(app || 0 || funders))[:32], where
// funders is the canonical JSON of the funder set, or "maintainers" for a
// fund of the app's maintainers.
func DeriveFundID(app string, funders *MaintainerSet) string {
	who := []byte("maintainers")
	if funders != nil {
		b, err := json.Marshal(funders)
		if err != nil {
			panic("protocol: marshal funders: " + err.Error())
		}
		who = b
	}
	h := sha256.New()
	h.Write([]byte(app))
	h.Write([]byte{0})
	h.Write(who)
	return FundIDPrefix + hex.EncodeToString(h.Sum(nil))[:32]
}

// DecodeFund decodes and validates a canonical fund record.
func DecodeFund(data []byte) (*Fund, error) {
	if len(data) > MaxStatementSize {
		return nil, fmt.Errorf("%w: fund of %d bytes", ErrTooLarge, len(data))
	}
	var f Fund
	if err := DecodeCanonical(data, &f); err != nil {
		return nil, err
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// PayoutAddress is an operator's signed statement "pay mirror Peer in these
// units to these addresses" (envelope kind payout). The one with the highest
// Seq wins.
type PayoutAddress struct {
	Peer string `json:"peer"`
	Seq  uint64 `json:"seq"`
	Time int64  `json:"time"`
	// Addresses maps a unit to an address in it.
	Addresses map[string]string `json:"addresses"`
}

// Validate checks the statement's shape.
func (p *PayoutAddress) Validate() error {
	if p.Peer == "" || p.Seq == 0 || p.Time <= 0 {
		return fmt.Errorf("%w: payout address needs peer, seq and time", ErrInvalid)
	}
	if len(p.Addresses) == 0 || len(p.Addresses) > MaxPayoutAddresses {
		return fmt.Errorf("%w: %d addresses (1..%d)", ErrInvalid, len(p.Addresses), MaxPayoutAddresses)
	}
	for u, a := range p.Addresses {
		if !ValidUnit(u) {
			return fmt.Errorf("%w: unit %q", ErrInvalid, u)
		}
		if !addressRE.MatchString(a) {
			return fmt.Errorf("%w: address %q for %s is not 1-128 characters of [A-Za-z0-9:._-]", ErrInvalid, a, u)
		}
	}
	return checkString("peer", p.Peer)
}

// DecodePayoutAddress decodes and validates a canonical payout statement.
func DecodePayoutAddress(data []byte) (*PayoutAddress, error) {
	var p PayoutAddress
	if err := DecodeCanonical(data, &p); err != nil {
		return nil, err
	}
	return &p, p.Validate()
}

// ParsePayoutFlag parses "UNIT=ADDRESS".
func ParsePayoutFlag(s string) (unit, addr string, err error) {
	unit, addr, ok := strings.Cut(s, "=")
	if !ok || !ValidUnit(unit) || !addressRE.MatchString(addr) {
		return "", "", fmt.Errorf("%w: payout %q is not UNIT=ADDRESS (e.g. STX=SP2J...)", ErrInvalid, s)
	}
	return unit, addr, nil
}

// Receipt is a client's signed statement "mirror Mirror delivered Bytes
// bytes of CID to me, each verified" (envelope kind receipt). Client is the
// client key's peer ID and must be the signer; a client keeps its key
// between runs so that the ledger can cap what one client counts for.
type Receipt struct {
	Client string `json:"client"`
	Seq    uint64 `json:"seq"`
	Time   int64  `json:"time"`
	Mirror string `json:"mirror"`
	CID    string `json:"cid"`
	Bytes  uint64 `json:"bytes"`
}

// Validate checks the receipt's shape.
func (r *Receipt) Validate() error {
	if r.Client == "" || r.Mirror == "" || r.CID == "" || r.Seq == 0 || r.Time <= 0 {
		return fmt.Errorf("%w: receipt needs client, mirror, cid, seq and time", ErrInvalid)
	}
	if r.Bytes == 0 || r.Bytes > MaxReceiptBytes {
		return fmt.Errorf("%w: receipt of %d bytes (1..%d)", ErrInvalid, r.Bytes, uint64(MaxReceiptBytes))
	}
	if r.Client == r.Mirror {
		return fmt.Errorf("%w: a mirror cannot sign its own receipt", ErrInvalid)
	}
	for _, f := range []struct{ name, v string }{{"client", r.Client}, {"mirror", r.Mirror}, {"cid", r.CID}} {
		if err := checkString(f.name, f.v); err != nil {
			return err
		}
	}
	return nil
}

// DecodeReceipt decodes and validates a canonical receipt.
func DecodeReceipt(data []byte) (*Receipt, error) {
	var r Receipt
	if err := DecodeCanonical(data, &r); err != nil {
		return nil, err
	}
	return &r, r.Validate()
}

// MaxReceiptSize bounds one signed receipt inside a [ReceiptWitness].
const MaxReceiptSize = 1024

// ReceiptWitness is a mirror's signed statement "a client whose address is
// in Network posted me these receipts" (envelope kind witness). The client's
// network is what the witness saw on the connection, never what the client
// or the credited mirror claims; the ledger counts a receipt only through a
// witness in a failure domain other than the credited mirror's, so a mirror
// cannot vouch for its own traffic.
type ReceiptWitness struct {
	Witness string `json:"witness"`
	Seq     uint64 `json:"seq"`
	Time    int64  `json:"time"`
	// Network is the client's IPv4 /24 or IPv6 /48 ("198.51.100.0/24").
	Network  string   `json:"network"`
	Receipts [][]byte `json:"receipts"`
}

// ClientNetwork is the network a client address counts in: its IPv4 /24 or
// IPv6 /48.
func ClientNetwork(a netip.Addr) string {
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p.String()
}

// Validate checks the statement's shape (not the receipts' signatures).
func (w *ReceiptWitness) Validate() error {
	if w.Witness == "" || w.Seq == 0 || w.Time <= 0 {
		return fmt.Errorf("%w: witness needs witness, seq and time", ErrInvalid)
	}
	p, err := netip.ParsePrefix(w.Network)
	if err != nil || p.String() != w.Network || ClientNetwork(p.Addr()) != w.Network {
		return fmt.Errorf("%w: network %q is not an IPv4 /24 or IPv6 /48", ErrInvalid, w.Network)
	}
	if len(w.Receipts) == 0 || len(w.Receipts) > MaxReceiptsPerPost {
		return fmt.Errorf("%w: %d receipts (1..%d)", ErrInvalid, len(w.Receipts), MaxReceiptsPerPost)
	}
	for i, r := range w.Receipts {
		if len(r) == 0 || len(r) > MaxReceiptSize {
			return fmt.Errorf("%w: receipt %d is %d bytes (1..%d)", ErrInvalid, i, len(r), MaxReceiptSize)
		}
	}
	return checkString("witness", w.Witness)
}

// DecodeReceiptWitness decodes and validates a canonical witness payload.
func DecodeReceiptWitness(data []byte) (*ReceiptWitness, error) {
	var w ReceiptWitness
	if err := DecodeCanonical(data, &w); err != nil {
		return nil, err
	}
	return &w, w.Validate()
}

// LedgerRoot is a mirror's signed statement "for Fund's Epoch, from the
// evidence whose root is Evidence, I computed the ledger whose hash is
// Table" (envelope kind ledger-root).
type LedgerRoot struct {
	Peer     string `json:"peer"`
	Seq      uint64 `json:"seq"`
	Time     int64  `json:"time"`
	App      string `json:"app"`
	Fund     string `json:"fund"`
	Epoch    uint64 `json:"epoch"`
	Evidence string `json:"evidence"`
	Table    string `json:"table"`
}

// Validate checks the statement's shape.
func (l *LedgerRoot) Validate() error {
	if l.Peer == "" || l.Seq == 0 || l.Time <= 0 {
		return fmt.Errorf("%w: ledger root needs peer, seq and time", ErrInvalid)
	}
	if !IsAppID(l.App) || !strings.HasPrefix(l.Fund, FundIDPrefix) {
		return fmt.Errorf("%w: ledger root names no app or fund", ErrInvalid)
	}
	if !isHexDigest(l.Evidence) || !isHexDigest(l.Table) {
		return fmt.Errorf("%w: evidence and table must be hex SHA-256 digests", ErrInvalid)
	}
	return checkString("peer", l.Peer)
}

// DecodeLedgerRoot decodes and validates a canonical ledger root.
func DecodeLedgerRoot(data []byte) (*LedgerRoot, error) {
	var l LedgerRoot
	if err := DecodeCanonical(data, &l); err != nil {
		return nil, err
	}
	return &l, l.Validate()
}

// Approval is the record a fund's signers co-sign (see [SignedRecord]) to
// approve one epoch's payout table for execution.
type Approval struct {
	Fund  string `json:"fund"`
	Epoch uint64 `json:"epoch"`
	Table string `json:"table"`
	Time  int64  `json:"time"`
}

// Validate checks the record's shape.
func (a *Approval) Validate() error {
	if !strings.HasPrefix(a.Fund, FundIDPrefix) || !isHexDigest(a.Table) || a.Time <= 0 {
		return fmt.Errorf("%w: approval needs fund, table digest and time", ErrInvalid)
	}
	return nil
}

// DecodeApproval decodes and validates a canonical approval record.
func DecodeApproval(data []byte) (*Approval, error) {
	var a Approval
	if err := DecodeCanonical(data, &a); err != nil {
		return nil, err
	}
	return &a, a.Validate()
}

// SignedRecord is a record signed by several keys, laid out exactly like a
// [SignedRelease] but with the record's own domain and payload type bound
// into each signature (funds: [DomainFund]/[PayloadFund]; approvals:
// [DomainApproval]/[PayloadApproval]).
type SignedRecord struct {
	Record     []byte             `json:"record"`
	Signatures []ReleaseSignature `json:"signatures"`
}

// DecodeSignedRecord decodes and validates the shape of a canonical signed
// record; it checks no signature.
func DecodeSignedRecord(data []byte) (*SignedRecord, error) {
	if len(data) > MaxStatementSize {
		return nil, fmt.Errorf("%w: signed record of %d bytes (limit %d)", ErrTooLarge, len(data), MaxStatementSize)
	}
	var s SignedRecord
	if err := DecodeCanonical(data, &s); err != nil {
		return nil, err
	}
	// The signature rules are those of a signed release.
	sr := SignedRelease{Release: s.Record, Signatures: s.Signatures}
	if err := sr.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *SignedRecord) normalize() {
	sr := SignedRelease{Release: s.Record, Signatures: s.Signatures}
	sr.normalize()
	s.Signatures = sr.Signatures
}

// signedRecordPrefix starts every canonical SignedRecord encoding.
var signedRecordPrefix = []byte(`{"record":"`)

// IsSignedRecord reports whether a statement frame is a [SignedRecord].
func IsSignedRecord(b []byte) bool {
	return len(b) >= len(signedRecordPrefix) && string(b[:len(signedRecordPrefix)]) == string(signedRecordPrefix)
}

func isHexDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}
