package release

import (
	"fmt"
	"slices"

	"github.com/mirrornet/mirrornet/protocol"
)

// IntegrityState summarises what builders say about a release's CID.
type IntegrityState string

const (
	// Unverified: no independent builder has attested this app version.
	Unverified IntegrityState = "unverified"
	// Verified: at least one independent builder attests the release CID
	// and none attests another.
	Verified IntegrityState = "verified"
	// Diverges: some builder attests a different CID for this app version.
	Diverges IntegrityState = "diverges"
)

// Integrity is the verdict of CheckIntegrity.
type Integrity struct {
	State IntegrityState
	// Builders are the distinct independent builder keys that attest the
	// release CID, sorted.
	Builders []string
	// Divergent maps each builder that attests a different CID (maintainers
	// included) to the CIDs it claims, sorted.
	Divergent map[string][]string
}

// String is the one-line form shown to users: "verified · 2 builders",
// "diverges" (with who and what) or "unverified".
func (i Integrity) String() string {
	switch i.State {
	case Verified:
		if len(i.Builders) == 1 {
			return "verified · 1 builder"
		}
		return fmt.Sprintf("verified · %d builders", len(i.Builders))
	case Diverges:
		keys := make([]string, 0, len(i.Divergent))
		for k := range i.Divergent {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return fmt.Sprintf("diverges · %d builder(s) built another CID (%s: %s)", len(keys), keys[0], i.Divergent[keys[0]][0])
	default:
		return string(Unverified)
	}
}

// CheckIntegrity says whether builds reproduce rel. builds must come from
// verified statements (attest.Verify), so Builder is the signer.
//
// Only attestations naming rel's app and version count, and, when both
// name a source commit, only those that built rel's commit (a builder who
// built another commit says nothing about this release). A builder agrees
// when it attests rel.CID. Independence is the point: keys of rel's
// maintainer sets (current and previous) do not count as builders, because
// their word is already the release signature; distinct keys count once
// however many attestations they sign. Any builder (maintainers included)
// attesting a different CID makes the release "diverges", whatever the
// number of agreeing builders: a disagreement must be looked at.
// Anyone can make a builder key, so "diverges" is a prompt to look (String
// names a divergent builder and its CID), not proof of tampering; weighing
// builders by reputation is left to a later trusted-builders list.
func CheckIntegrity(rel protocol.Release, builds []protocol.BuildAttestation) Integrity {
	out := Integrity{State: Unverified}
	agree := map[string]bool{}
	for _, b := range builds {
		if b.App != rel.App || b.Version != rel.Version {
			continue
		}
		if b.Commit != "" && rel.Commit != "" && b.Commit != rel.Commit {
			continue
		}
		if b.CID != rel.CID {
			if out.Divergent == nil {
				out.Divergent = map[string][]string{}
			}
			if !slices.Contains(out.Divergent[b.Builder], b.CID) {
				out.Divergent[b.Builder] = append(out.Divergent[b.Builder], b.CID)
				slices.Sort(out.Divergent[b.Builder])
			}
			continue
		}
		if rel.Maintainers.Has(b.Builder) || (rel.Previous != nil && rel.Previous.Has(b.Builder)) {
			continue
		}
		agree[b.Builder] = true
	}
	for k := range agree {
		out.Builders = append(out.Builders, k)
	}
	slices.Sort(out.Builders)
	switch {
	case len(out.Divergent) > 0:
		out.State = Diverges
	case len(out.Builders) > 0:
		out.State = Verified
	}
	return out
}
