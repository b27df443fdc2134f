package client

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// healthView is the client's verified picture of the mirrors: the latest
// (highest Seq) signed liveness statement per signer, gathered from every
// source. It is pure: no I/O, no clock; the caller passes now.
type healthView struct {
	latest map[peer.ID]*attest.Statement
	// rejected counts statements that failed verification (unsigned,
	// forged, malformed, from the future), per source, for the log.
	rejected map[string]int
}

func newHealthView() *healthView {
	return &healthView{latest: map[peer.ID]*attest.Statement{}, rejected: map[string]int{}}
}

// add verifies raw and keeps it if it is a liveness statement newer than
// the one held for its signer. Statements that are only too old are kept
// (they prove the mirror dead); everything else that fails verification is
// counted against source and dropped. It reports whether raw was kept.
func (v *healthView) add(source string, raw []byte, now time.Time) bool {
	st, err := attest.Verify(raw, now)
	if err != nil && !errors.Is(err, attest.ErrTooOld) {
		v.rejected[source]++
		return false
	}
	if st.Kind != attest.KindLiveness || st.Liveness == nil {
		return false
	}
	if old, ok := v.latest[st.Signer]; ok && old.Seq >= st.Seq {
		return false
	}
	v.latest[st.Signer] = st
	return true
}

// usable returns the normalised HTTP base URLs of mirrors whose latest
// statement is "up", at most maxAge old at now, and lists root, sorted.
func (v *healthView) usable(root string, now time.Time, maxAge time.Duration) []string {
	var out []string
	for _, st := range v.latest {
		l := st.Liveness
		if l.State != protocol.StateUp || l.HTTP == "" {
			continue
		}
		if now.Sub(st.Time) > maxAge {
			continue
		}
		if _, found := slices.BinarySearch(l.Bundles, root); !found {
			continue
		}
		u, err := normalizeHTTP(l.HTTP)
		if err != nil {
			continue
		}
		out = append(out, u)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// statusOf explains why a mirror's URL is not usable, for reports.
func (v *healthView) statusOf(u string, root string, now time.Time, maxAge time.Duration) string {
	for _, st := range v.latest {
		if h, err := normalizeHTTP(st.Liveness.HTTP); err != nil || h != u {
			continue
		}
		l := st.Liveness
		switch {
		case l.State != protocol.StateUp:
			return "mirror is " + l.State
		case now.Sub(st.Time) > maxAge:
			return "latest statement is " + now.Sub(st.Time).Round(time.Second).String() + " old"
		case !slices.Contains(l.Bundles, root):
			return "mirror does not list " + root
		}
		return "usable"
	}
	return "no statement"
}

// normalizeHTTP checks an http(s) base URL and strips trailing slashes.
func normalizeHTTP(s string) (string, error) {
	u, err := parseHTTPBase(s)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(u, "/"), nil
}
