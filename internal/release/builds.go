package release

import (
	"slices"
	"strings"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// MaxBuildersPerRelease bounds the builders remembered for one app version:
// far more independent rebuilds than any release gets, small enough that a
// flood of fresh keys costs little memory.
const MaxBuildersPerRelease = 64

// Builds collects verified build attestations by app version, keeping the
// latest (highest Seq) per builder. Attestations without an app version
// are not kept. Not safe for concurrent use; pure.
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

// Add keeps a verified build statement (attest.Verify, Kind KindBuild) and
// reports whether it was kept: not when it names no app version, is not
// newer than that builder's last one for the version, or the version
// already has MaxBuildersPerRelease builders.
func (b *Builds) Add(st *attest.Statement) bool {
	if st == nil || st.Kind != attest.KindBuild || st.Build == nil || st.Build.App == "" {
		return false
	}
	a := *st.Build
	k := buildKey{a.App, a.Version}
	m := b.byRelease[k]
	if m == nil {
		m = map[string]protocol.BuildAttestation{}
		b.byRelease[k] = m
	}
	old, ok := m[a.Builder]
	switch {
	case ok && old.Seq >= a.Seq:
		return false
	case !ok && len(m) >= MaxBuildersPerRelease:
		return false
	}
	m[a.Builder] = a
	return true
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
