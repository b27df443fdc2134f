package badge

import "fmt"

// Integrity is the code-integrity badge of an app's current release, from
// what independent builders attest (see internal/release.CheckIntegrity):
//
//   - state "verified": "verified · 3 builders", brightgreen (green for a
//     single builder: one rebuild is a start, not a consensus);
//   - state "diverges": "diverges", red: some builder built another CID;
//   - anything else: "unverified", lightgrey.
//
// state is the string form of release.IntegrityState; builders counts the
// distinct independent builders that agree.
func Integrity(state string, builders int) Badge {
	b := Badge{Label: "integrity"}
	switch state {
	case "verified":
		b.Message = fmt.Sprintf("verified · %d %s", builders, plural(builders, "builder", "builders"))
		b.Color = "brightgreen"
		if builders < 2 {
			b.Color = "green"
		}
	case "diverges":
		b.Message, b.Color = "diverges", "red"
	default:
		b.Message, b.Color = "unverified", "lightgrey"
	}
	return b
}
