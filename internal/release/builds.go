package release

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// ErrUnlistedBuilder: a build attestation is signed by a key the release
// does not declare among its builders. It is not kept: it could change
// nothing, and keeping it would let strangers fill memory.
var ErrUnlistedBuilder = errors.New("release: unlisted builder: the release does not declare this builder key")

// Builds collects verified build attestations by app version, keeping the
// latest (highest Seq) per declared builder: at most len(Builders.Keys)
// (protocol.MaxMaintainers) per release, so there are no first-come slots
// for strangers to take. Not safe for concurrent use; pure.
type Builds struct {
	byRelease map[buildKey]map[string]protocol.BuildAttestation
}

type buildKey struct {
	app     string
	version uint64
}

// NewBuilds returns an empty collection.
func NewBuilds() *Builds {
	return &Builds{byRelease: map[buildKey]map[string]protocol.BuildAttestation{}}
}

// Add keeps a verified build statement (attest.Verify, Kind KindBuild) of
// rel. It returns ErrUnlistedBuilder when rel does not declare the
// builder, attest.ErrReplay when it is not newer than that builder's last
// one for the version, and an error when it does not name rel.
func (b *Builds) Add(st *attest.Statement, rel protocol.Release) error {
	if st == nil || st.Kind != attest.KindBuild || st.Build == nil {
		return fmt.Errorf("%w: not a build attestation", attest.ErrKind)
	}
	a := *st.Build
	if a.App != rel.App || a.Version != rel.Version {
		return fmt.Errorf("release: attestation names %s@%d, not %s@%d", a.App, a.Version, rel.App, rel.Version)
	}
	if !Listed(rel, a.Builder) {
		return fmt.Errorf("%w: %s for %s@%d", ErrUnlistedBuilder, a.Builder, a.App, a.Version)
	}
	k := buildKey{a.App, a.Version}
	m := b.byRelease[k]
	if m == nil {
		m = map[string]protocol.BuildAttestation{}
		b.byRelease[k] = m
	}
	if old, ok := m[a.Builder]; ok && old.Seq >= a.Seq {
		return fmt.Errorf("%w: not newer than %s's last attestation for %s@%d", attest.ErrReplay, a.Builder, a.App, a.Version)
	}
	m[a.Builder] = a
	return nil
}

// For returns the kept attestations of app version, sorted by builder: the
// input of CheckIntegrity. The slice is the caller's.
func (b *Builds) For(app string, version uint64) []protocol.BuildAttestation {
	m := b.byRelease[buildKey{app, version}]
	out := make([]protocol.BuildAttestation, 0, len(m))
	for _, a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(x, y protocol.BuildAttestation) int { return strings.Compare(x.Builder, y.Builder) })
	return out
}
