package release

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// DefaultTTL is how long a release stays current unless re-signed: a month
// lets offline maintainers re-sign on a calendar reminder, and bounds how
// long a frozen mirror can pass an old release off as current.
const DefaultTTL = 30 * 24 * time.Hour

// ErrParams: the release parameters are incomplete or inconsistent.
var ErrParams = errors.New("release: invalid release parameters")

// Params describe a release record to make.
type Params struct {
	// App is the app ID. Leave it empty for the app's first release (or
	// the first rotation away from the genesis set) to derive it from Name
	// and the genesis set; later releases must give it.
	App  string
	Name string
	// Version must be above the app's latest.
	Version uint64
	CID     string
	// Repo, Commit and Build say how to rebuild the bundle.
	Repo, Commit, Build string
	// Maintainers is the set from this version on; keys need not be sorted.
	Maintainers protocol.MaintainerSet
	// Previous is the set being replaced, for a rotation only.
	Previous *protocol.MaintainerSet
	// Builders are the builder keys whose attestations count for code
	// integrity, with their threshold; nil declares none.
	Builders *protocol.MaintainerSet
	// Time is the signing time; the record expires at Time + TTL
	// (DefaultTTL if zero).
	Time time.Time
	TTL  time.Duration
}

// NextParams starts the parameters of the release after prev: same app,
// name and maintainers, version + 1, same source repository and build.
func NextParams(prev protocol.Release, cid string, now time.Time) Params {
	return Params{
		App: prev.App, Name: prev.Name, Version: prev.Version + 1, CID: cid,
		Repo: prev.Repo, Build: prev.Build,
		Maintainers: prev.Maintainers, Builders: prev.Builders, Time: now,
	}
}

func sortedSet(s protocol.MaintainerSet) protocol.MaintainerSet {
	s.Keys = protocol.SortUnique(slices.Clone(s.Keys))
	return s
}

// Record builds the (unsigned) release record.
func (p Params) Record() (protocol.Release, error) {
	if p.Time.IsZero() {
		return protocol.Release{}, fmt.Errorf("%w: time is not set", ErrParams)
	}
	ttl := p.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < 0 {
		return protocol.Release{}, fmt.Errorf("%w: ttl %s is negative", ErrParams, ttl)
	}
	rec := protocol.Release{
		App: p.App, Name: p.Name, Version: p.Version, CID: p.CID,
		Repo: p.Repo, Commit: p.Commit, Build: p.Build,
		Time: p.Time.UnixMilli(), Expires: p.Time.Add(ttl).UnixMilli(),
		Maintainers: sortedSet(p.Maintainers),
	}
	if p.Previous != nil {
		prev := sortedSet(*p.Previous)
		rec.Previous = &prev
	}
	if p.Builders != nil {
		b := sortedSet(*p.Builders)
		rec.Builders = &b
	}
	if rec.App == "" {
		genesis := rec.Maintainers
		if rec.Previous != nil {
			genesis = *rec.Previous
		}
		rec.App = protocol.DeriveAppID(rec.Name, genesis)
	}
	for _, set := range []*protocol.MaintainerSet{&rec.Maintainers, rec.Previous, rec.Builders} {
		if set == nil {
			continue
		}
		for _, k := range set.Keys {
			if _, err := attest.ParseKey(k); err != nil {
				return protocol.Release{}, fmt.Errorf("%w: %w", ErrParams, err)
			}
		}
	}
	if err := rec.Validate(); err != nil {
		return protocol.Release{}, fmt.Errorf("%w: %w", ErrParams, err)
	}
	return rec, nil
}

// Sign makes the record of p and signs it with keys (maintainers of the new
// or, for a rotation, the previous set). The result need not reach the
// threshold yet: other maintainers add theirs with attest.CosignRelease.
func Sign(p Params, keys ...crypto.PrivKey) ([]byte, error) {
	rec, err := p.Record()
	if err != nil {
		return nil, err
	}
	return attest.SignRelease(rec, keys...)
}

// Build loads the key files, makes the record of p and signs it with every
// key: what `mirrornet release` calls.
func Build(p Params, keyFiles ...string) ([]byte, error) {
	if len(keyFiles) == 0 {
		return nil, fmt.Errorf("%w: no key files", ErrParams)
	}
	keys := make([]crypto.PrivKey, 0, len(keyFiles))
	for _, f := range keyFiles {
		k, err := LoadKeyFile(f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return Sign(p, keys...)
}

// Cosign loads the key files and adds their signatures to a signed release.
func Cosign(raw []byte, keyFiles ...string) ([]byte, error) {
	keys := make([]crypto.PrivKey, 0, len(keyFiles))
	for _, f := range keyFiles {
		k, err := LoadKeyFile(f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return attest.CosignRelease(raw, keys...)
}

// MaintainerSetOf is a convenience for a set of keys (in any order) with a
// threshold.
func MaintainerSetOf(threshold int, keys ...string) protocol.MaintainerSet {
	return sortedSet(protocol.MaintainerSet{Keys: keys, Threshold: threshold})
}
