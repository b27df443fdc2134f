package protocol

import (
	"fmt"
	"slices"
	"time"
)

// Liveness states.
const (
	StateUp      = "up"
	StateLeaving = "leaving"
)

// Liveness is a mirror's signed heartbeat: "peer Peer is up (or leaving) at
// Time, sequence Seq, reachable at Addrs, HTTP at HTTP, holding what its
// holdings statement of digest Holdings lists (or, in the older form, the
// Bundles listed inline), running Version".
type Liveness struct {
	// Peer is the subject: the mirror's peer ID (base58). It must be the
	// signer.
	Peer string `json:"peer"`
	// State is StateUp or StateLeaving.
	State string `json:"state"`
	// Seq rises with every statement the mirror signs.
	Seq uint64 `json:"seq"`
	// Time is the signing time in Unix milliseconds.
	Time int64 `json:"time"`
	// Addrs are the mirror's libp2p multiaddrs (without /p2p/).
	Addrs []string `json:"addrs"`
	// HTTP is the base URL of the mirror's public HTTP side, or "".
	HTTP string `json:"http"`
	// Bundles are the root CIDs the mirror holds complete and verified,
	// sorted, without duplicates: the older, inline form of holdings. nil
	// (absent on the wire) when the statement carries Holdings instead;
	// an empty list still says "holds nothing".
	Bundles []string `json:"bundles,omitzero"`
	// Version is the mirror's software version.
	Version string `json:"version"`
	// Region is an optional self-declared location label; others weigh it
	// below what they observe.
	Region string `json:"region,omitempty"`
	// Apps are the app IDs the mirror follows, sorted.
	Apps []string `json:"apps,omitempty"`
	// TTL is the signer's promise, in milliseconds, to sign its next
	// statement within TTL of Time (at most [MaxLivenessTTL]); receivers
	// count lateness from Time+TTL. 0 (absent) is the heartbeat promise:
	// a new statement every heartbeat.
	TTL int64 `json:"ttl,omitempty"`
	// Holdings is the [HoldingsDigest] of the bundles the mirror holds:
	// the mirror's signed [Holdings] statement with this digest lists them.
	// A statement carries Holdings, Bundles, or both (then they must
	// agree); one with neither is invalid.
	Holdings string `json:"holdings,omitempty"`
	// HoldingsCount is how many bundles the Holdings set lists.
	HoldingsCount int `json:"holdings_count,omitempty"`
}

// Inline reports whether l lists its bundles itself (the older form)
// rather than naming a holdings statement by digest only.
func (l *Liveness) Inline() bool { return l.Bundles != nil }

// TTLDuration is l.TTL as a duration, capped at MaxLivenessTTL.
func (l *Liveness) TTLDuration() time.Duration {
	return min(time.Duration(max(l.TTL, 0))*time.Millisecond, MaxLivenessTTL)
}

func (l *Liveness) normalize() {
	if l.Addrs == nil {
		l.Addrs = []string{}
	}
	if l.Bundles == nil && l.Holdings == "" {
		l.Bundles = []string{}
	}
}

// Validate checks the fields' shape (not signatures or time).
func (l *Liveness) Validate() error {
	if l.Peer == "" {
		return fmt.Errorf("%w: peer is empty", ErrInvalid)
	}
	if l.State != StateUp && l.State != StateLeaving {
		return fmt.Errorf("%w: state %q", ErrInvalid, l.State)
	}
	if l.Seq == 0 {
		return fmt.Errorf("%w: seq is zero", ErrInvalid)
	}
	if l.Time <= 0 {
		return fmt.Errorf("%w: time is not positive", ErrInvalid)
	}
	if l.TTL < 0 || l.TTL > MaxLivenessTTL.Milliseconds() {
		return fmt.Errorf("%w: ttl %d ms (limit %d)", ErrInvalid, l.TTL, MaxLivenessTTL.Milliseconds())
	}
	for _, f := range []struct{ name, v string }{{"peer", l.Peer}, {"http", l.HTTP}, {"version", l.Version}, {"region", l.Region}} {
		if err := checkString(f.name, f.v); err != nil {
			return err
		}
	}
	if err := checkStrings("addrs", l.Addrs, MaxAddrs); err != nil {
		return err
	}
	if err := checkStrings("bundles", l.Bundles, MaxBundles); err != nil {
		return err
	}
	if err := checkStrings("apps", l.Apps, MaxBundles); err != nil {
		return err
	}
	if !sortedUnique(l.Bundles) {
		return fmt.Errorf("%w: bundles not sorted and unique", ErrInvalid)
	}
	if err := l.validateHoldings(); err != nil {
		return err
	}
	if !sortedUnique(l.Apps) {
		return fmt.Errorf("%w: apps not sorted and unique", ErrInvalid)
	}
	return nil
}

// validateHoldings checks that l says what it holds, inline or by digest,
// and that the two agree when it does both.
func (l *Liveness) validateHoldings() error {
	switch {
	case l.Bundles == nil && l.Holdings == "":
		return fmt.Errorf("%w: %w", ErrInvalid, ErrNoHoldings)
	case l.Holdings == "" && l.HoldingsCount != 0:
		return fmt.Errorf("%w: holdings_count without holdings", ErrInvalid)
	case l.Holdings == "":
		return nil
	case !validDigest(l.Holdings):
		return fmt.Errorf("%w: holdings %.80q is not a sha2-256 multihash in hex", ErrInvalid, l.Holdings)
	case l.HoldingsCount < 0 || l.HoldingsCount > MaxHoldings:
		return fmt.Errorf("%w: holdings_count %d (limit %d)", ErrInvalid, l.HoldingsCount, MaxHoldings)
	case l.Bundles != nil && (len(l.Bundles) != l.HoldingsCount || HoldingsDigest(l.Bundles) != l.Holdings):
		return fmt.Errorf("%w: %w", ErrInvalid, ErrHoldingsMismatch)
	}
	return nil
}

func sortedUnique(ss []string) bool {
	for i := 1; i < len(ss); i++ {
		if ss[i-1] >= ss[i] {
			return false
		}
	}
	return true
}

// SortUnique sorts ss in place and drops duplicates.
func SortUnique(ss []string) []string {
	slices.Sort(ss)
	return slices.Compact(ss)
}

// DecodeLiveness decodes and validates a canonical liveness payload.
func DecodeLiveness(data []byte) (*Liveness, error) {
	var l Liveness
	if err := DecodeCanonical(data, &l); err != nil {
		return nil, err
	}
	if l.Addrs == nil { // Encode writes [], never null
		return nil, fmt.Errorf("%w: null list", ErrNonCanonical)
	}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	return &l, nil
}

// SyncRequest opens a sync stream. Kinds filters the statement kinds wanted
// ("liveness", "probe", "release", "build"); empty means all.
type SyncRequest struct {
	Kinds []string `json:"kinds,omitempty"`
}
