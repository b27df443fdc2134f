package release

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// Chain errors: why Book.Apply refused a record. Each names the rule broken.
var (
	// ErrNotAnchored: the first record seen for an app is not signed by the
	// maintainer set its app ID commits to (Ignore: the chain up to it may
	// simply not have arrived yet).
	ErrNotAnchored = errors.New("release: first record of the app is not signed by the maintainers its app ID names")
	// ErrDuplicate: the record is already applied (Ignore).
	ErrDuplicate = errors.New("release: record already applied")
	// ErrRollback: the version is not above the highest one accepted, even
	// if that one has expired (Ignore: an old record replayed).
	ErrRollback = errors.New("release: version is not above the current one (rollback)")
	// ErrNameChange: the record renames the app (Reject).
	ErrNameChange = errors.New("release: record renames the app")
	// ErrUnknownPrevious: the maintainer set changes, but the record does not
	// name the current set as Previous (Ignore: it may rotate from a set we
	// have not learnt yet).
	ErrUnknownPrevious = errors.New("release: maintainer change does not start from the current maintainer set")
	// ErrOldThreshold: a maintainer change lacks the current maintainers'
	// threshold (Reject).
	ErrOldThreshold = errors.New("release: maintainer change not signed by enough current maintainers")
	// ErrNewThreshold: the record lacks its own maintainer set's threshold
	// (Reject).
	ErrNewThreshold = errors.New("release: not signed by enough of its own maintainers")
)

// Status is the freshness of an app's latest release.
type Status int

const (
	// StatusUnknown: no release of the app is known.
	StatusUnknown Status = iota
	// StatusCurrent: the latest release has not expired.
	StatusCurrent
	// StatusStale: the latest release has expired and nothing newer is
	// known. Clients must say so and never report it as current.
	StatusStale
)

func (s Status) String() string {
	switch s {
	case StatusCurrent:
		return "current"
	case StatusStale:
		return "stale"
	default:
		return "unknown"
	}
}

// Book holds each app's accepted release records. The zero value is not
// usable; call NewBook. Not safe for concurrent use.
//
// Anyone can make a key and so an app: a Book does not bound how many apps
// it holds, so a node should add records only for the apps it follows (and
// hand peers the records of those).
//
// Trust starts at the genesis set an app ID commits to. Like a TUF client
// with an old root, a Book that has seen nothing of an app will anchor on a
// rotation signed by the genesis set, so the genesis keys stay sensitive
// after a rotation until followers have seen the real chain.
type Book struct {
	apps map[string]*chain
}

type chain struct {
	name    string
	current protocol.MaintainerSet // maintainer set of the latest record
	latest  *attest.Release
	// byVersion holds every accepted record of the app.
	byVersion map[uint64]*attest.Release
}

// NewBook returns an empty book.
func NewBook() *Book { return &Book{apps: map[string]*chain{}} }

// Apply adds a verified release (from attest.VerifyRelease, including one
// returned with an expiry error: expired records still extend the chain and
// block rollbacks) to the book, or says which rule it breaks:
//
//   - an app's first record must be anchored: DeriveAppID(name, set) equals
//     its app ID, where set is Previous if present, else Maintainers
//     (ErrNotAnchored);
//   - the version must be above the highest accepted (ErrRollback, or
//     ErrDuplicate for the same bytes), and the name must not change;
//   - a record whose Maintainers differ from the current set must name the
//     current set as Previous (ErrUnknownPrevious) and be signed by its
//     threshold (ErrOldThreshold);
//   - every record carries its own set's threshold (ErrNewThreshold).
//
// now bounds how far in the future a record's time may be.
func (b *Book) Apply(rel *attest.Release, now time.Time) error {
	rec := &rel.Record
	if t := time.UnixMilli(rec.Time); t.After(now.Add(protocol.MaxClockDisparity)) {
		return fmt.Errorf("%w: signed %s ahead of now", attest.ErrFuture, t.Sub(now).Round(time.Millisecond))
	}
	if n := rel.SignedBy(rec.Maintainers); n < rec.Maintainers.Threshold {
		return fmt.Errorf("%w: %d of %d", ErrNewThreshold, n, rec.Maintainers.Threshold)
	}
	c := b.apps[rec.App]
	if c == nil {
		anchor := rec.Maintainers
		if rec.Previous != nil {
			anchor = *rec.Previous
		}
		if protocol.DeriveAppID(rec.Name, anchor) != rec.App {
			return fmt.Errorf("%w: %s version %d (apply the app's earlier records first)", ErrNotAnchored, rec.App, rec.Version)
		}
		if rec.Previous != nil {
			if n := rel.SignedBy(*rec.Previous); n < rec.Previous.Threshold {
				return fmt.Errorf("%w: %d of %d", ErrOldThreshold, n, rec.Previous.Threshold)
			}
		}
		c = &chain{name: rec.Name, byVersion: map[uint64]*attest.Release{}}
		b.apps[rec.App] = c
		c.add(rel)
		return nil
	}
	latest := c.latest.Record.Version
	if rec.Version == latest && bytes.Equal(rel.Raw, c.latest.Raw) {
		return fmt.Errorf("%w: %s version %d", ErrDuplicate, rec.App, rec.Version)
	}
	if rec.Version <= latest {
		return fmt.Errorf("%w: %s version %d, have %d", ErrRollback, rec.App, rec.Version, latest)
	}
	if rec.Name != c.name {
		return fmt.Errorf("%w: %q to %q", ErrNameChange, c.name, rec.Name)
	}
	changed := !rec.Maintainers.Equal(c.current)
	if rec.Previous != nil && !rec.Previous.Equal(c.current) {
		return fmt.Errorf("%w: %s version %d", ErrUnknownPrevious, rec.App, rec.Version)
	}
	if changed {
		if rec.Previous == nil {
			return fmt.Errorf("%w: %s version %d changes maintainers without naming the previous set", ErrUnknownPrevious, rec.App, rec.Version)
		}
		if n := rel.SignedBy(c.current); n < c.current.Threshold {
			return fmt.Errorf("%w: %d of %d", ErrOldThreshold, n, c.current.Threshold)
		}
	}
	c.add(rel)
	return nil
}

func (c *chain) add(rel *attest.Release) {
	c.latest = rel
	c.current = rel.Record.Maintainers
	c.byVersion[rel.Record.Version] = rel
}

// ApplyAll applies records in version order (the order a sync response or
// a store need not keep) and returns the errors of those refused, as
// "app@version: reason".
func (b *Book) ApplyAll(rels []*attest.Release, now time.Time) []error {
	sorted := slices.Clone(rels)
	slices.SortStableFunc(sorted, func(x, y *attest.Release) int {
		if x.Record.Version < y.Record.Version {
			return -1
		}
		if x.Record.Version > y.Record.Version {
			return 1
		}
		return 0
	})
	var errs []error
	for _, r := range sorted {
		if err := b.Apply(r, now); err != nil {
			errs = append(errs, fmt.Errorf("%s@%d: %w", r.Record.App, r.Record.Version, err))
		}
	}
	return errs
}

// Current returns the latest release of app and whether it is current or
// stale at now (StatusUnknown and a zero Release if none is known).
func (b *Book) Current(app string, now time.Time) (protocol.Release, Status) {
	c := b.apps[app]
	if c == nil {
		return protocol.Release{}, StatusUnknown
	}
	if c.latest.Expired(now) {
		return c.latest.Record, StatusStale
	}
	return c.latest.Record, StatusCurrent
}

// Get returns an accepted release of app by version (0: the latest).
func (b *Book) Get(app string, version uint64) (protocol.Release, bool) {
	c := b.apps[app]
	if c == nil {
		return protocol.Release{}, false
	}
	if version == 0 {
		return c.latest.Record, true
	}
	r, ok := c.byVersion[version]
	if !ok {
		return protocol.Release{}, false
	}
	return r.Record, true
}

// Maintainers returns app's current maintainer set.
func (b *Book) Maintainers(app string) (protocol.MaintainerSet, bool) {
	c := b.apps[app]
	if c == nil {
		return protocol.MaintainerSet{}, false
	}
	return c.current, true
}

// Apps returns the IDs of the apps with at least one record, sorted.
func (b *Book) Apps() []string {
	ids := make([]string, 0, len(b.apps))
	for id := range b.apps {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Raw returns the signed bytes of every accepted record of app, in version
// order: what to store, and what to hand a peer in a sync response so that
// it can anchor the chain itself. The slices are shared: do not modify.
func (b *Book) Raw(app string) [][]byte {
	_, raws := b.RawVersions(app)
	return raws
}

// RawVersions is Raw with the version of each record.
func (b *Book) RawVersions(app string) ([]uint64, [][]byte) {
	c := b.apps[app]
	if c == nil {
		return nil, nil
	}
	versions := make([]uint64, 0, len(c.byVersion))
	for v := range c.byVersion {
		versions = append(versions, v)
	}
	slices.Sort(versions)
	out := make([][]byte, len(versions))
	for i, v := range versions {
		out[i] = c.byVersion[v].Raw
	}
	return versions, out
}

// Verdict maps an error of attest.VerifyRelease or Book.Apply to a gossip
// verdict: provably bad records are Reject; stale, rolled-back, duplicate or
// not-yet-anchored ones are Ignore.
func Verdict(err error) attest.Verdict {
	switch {
	case err == nil:
		return attest.Accept
	case errors.Is(err, ErrNotAnchored), errors.Is(err, ErrDuplicate), errors.Is(err, ErrRollback), errors.Is(err, ErrUnknownPrevious):
		return attest.Ignore
	case errors.Is(err, ErrNameChange), errors.Is(err, ErrOldThreshold), errors.Is(err, ErrNewThreshold):
		return attest.Reject
	default:
		return attest.Classify(err)
	}
}
