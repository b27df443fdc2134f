package release

import (
	"fmt"
	"slices"
)

// FileChange is one difference between two per-file CID listings.
type FileChange struct {
	Path string
	// Kind is "changed", "added" (only in the built tree) or "missing"
	// (only in the reference tree).
	Kind string
	// Got is the CID in the built tree, Want in the reference ("" when
	// absent).
	Got, Want string
}

func (c FileChange) String() string {
	switch c.Kind {
	case "added":
		return fmt.Sprintf("added    %s (%s)", c.Path, c.Got)
	case "missing":
		return fmt.Sprintf("missing  %s (want %s)", c.Path, c.Want)
	default:
		return fmt.Sprintf("changed  %s (got %s, want %s)", c.Path, c.Got, c.Want)
	}
}

// DiffFiles compares per-file CIDs (slash-separated path relative to the
// bundle root → CID) of a built tree against a reference tree, sorted by
// path.
func DiffFiles(got, want map[string]string) []FileChange {
	var out []FileChange
	for p, g := range got {
		w, ok := want[p]
		switch {
		case !ok:
			out = append(out, FileChange{Path: p, Kind: "added", Got: g})
		case w != g:
			out = append(out, FileChange{Path: p, Kind: "changed", Got: g, Want: w})
		}
	}
	for p, w := range want {
		if _, ok := got[p]; !ok {
			out = append(out, FileChange{Path: p, Kind: "missing", Want: w})
		}
	}
	slices.SortFunc(out, func(a, b FileChange) int {
		if a.Path < b.Path {
			return -1
		}
		if a.Path > b.Path {
			return 1
		}
		return 0
	})
	return out
}
