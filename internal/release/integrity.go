package release

import (
	"fmt"
	"slices"

	"github.com/mirrornet/mirrornet/protocol"
)

// IntegrityState summarises what a release's declared builders say about
// its CID.
type IntegrityState string

const (
	// Unverified: fewer than the release's builder threshold of declared
	// builders attest its CID (or it declares no builders).
	Unverified IntegrityState = "unverified"
	// Verified: at least the threshold of declared builders attest the
	// release CID and none attests another.
	Verified IntegrityState = "verified"
	// Diverges: a declared builder attests a different CID for this app
	// version.
	Diverges IntegrityState = "diverges"
)

// Integrity is the verdict of CheckIntegrity.
type Integrity struct {
	State IntegrityState
	// Builders are the distinct declared builder keys that attest the
	// release CID, sorted.
	Builders []string
	// Required is the release's builder threshold (0: it declares none).
	Required int
	// Divergent maps each declared builder that attests a different CID to
	// the CIDs it claims, sorted.
	Divergent map[string][]string
	// Unlisted are the distinct keys, not among the release's builders,
	// that attested this app version, sorted. They change nothing.
	Unlisted []string
}

// String is the one-line form shown to users: "verified · 2 builders",
// "diverges" (with who and what), "unverified · 1 of 2 builders" or
// "unverified · no builders declared".
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
		if i.Required == 0 {
			return string(Unverified) + " · no builders declared"
		}
		return fmt.Sprintf("%s · %d of %d builders", Unverified, len(i.Builders), i.Required)
	}
}

// Listed reports whether rel declares builder among its builders.
func Listed(rel protocol.Release, builder string) bool {
	return rel.Builders != nil && rel.Builders.Has(builder)
}

// CheckIntegrity says whether rel's declared builders reproduce it. builds
// must come from verified statements (attest.Verify), so Builder is the
// signer.
//
// Only attestations naming rel's app and version count, and, when both
// name a source commit, only those that built rel's commit (a builder who
// built another commit says nothing about this release). Only keys in
// rel.Builders count, each once however many attestations it signs: the
// maintainers chose them when they signed the release, so anyone else's
// word — any number of fresh keys — is "unlisted" and changes nothing.
// Verified needs rel.Builders.Threshold of them attesting rel.CID; any
// declared builder attesting a different CID makes the release "diverges",
// whatever the number agreeing: a disagreement must be looked at.
func CheckIntegrity(rel protocol.Release, builds []protocol.BuildAttestation) Integrity {
	out := Integrity{State: Unverified}
	if rel.Builders != nil {
		out.Required = rel.Builders.Threshold
	}
	agree := map[string]bool{}
	unlisted := map[string]bool{}
	for _, b := range builds {
		if b.App != rel.App || b.Version != rel.Version {
			continue
		}
		if b.Commit != "" && rel.Commit != "" && b.Commit != rel.Commit {
			continue
		}
		if !Listed(rel, b.Builder) {
			unlisted[b.Builder] = true
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
		agree[b.Builder] = true
	}
	for k := range agree {
		out.Builders = append(out.Builders, k)
	}
	slices.Sort(out.Builders)
	for k := range unlisted {
		out.Unlisted = append(out.Unlisted, k)
	}
	slices.Sort(out.Unlisted)
	switch {
	case len(out.Divergent) > 0:
		out.State = Diverges
	case out.Required > 0 && len(out.Builders) >= out.Required:
		out.State = Verified
	}
	return out
}
