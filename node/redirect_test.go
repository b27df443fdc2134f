package node

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/mirrornet/mirrornet/internal/redirect"
)

func rankedIDs(n *Node, root cid.Cid) []string {
	ranked, _ := redirect.Rank(redirectSource{n}.Candidates(root))
	var ids []string
	for _, c := range ranked {
		ids = append(ids, c.PeerID)
	}
	return ids
}

// The redirector of a live mirror lists the verified holders, never a
// mirror that does not hold the bundle, and drops a holder once it is dead.
func TestRedirectorSkipsDeadAndNonHolding(t *testing.T) {
	inBubble(t, testRedirectorSkipsDeadAndNonHolding)
}

func testRedirectorSkipsDeadAndNonHolding(t *testing.T) {
	c := newProbeCluster(t, 4, nil)
	c.connectRing(2)
	a, b, cc, d := c.nodes[0], c.nodes[1], c.nodes[2], c.nodes[3]
	waitFor(t, 30*time.Second, "all alive", func() (bool, string) { return allSee(c.nodes, alive(c.nodes)) })
	root := publishAndReplicate(t, c, a, b, cc)
	holders := []*Node{a, b, cc}
	waitFor(t, 60*time.Second, "holders verified", func() (bool, string) { return allVerified(t, c.nodes, holders) })

	got := rankedIDs(d, root)
	if len(got) != 3 || got[0] == d.ID().String() || strings.Contains(strings.Join(got, " "), d.ID().String()) {
		t.Fatalf("non-holder's redirector lists %v, want the three holders and never itself", got)
	}
	// d, which holds nothing, redirects a browser to a holder's own origin.
	code, h, _ := hostGet(t, d, d.httpLn.Addr().String(), "/ipfs/"+root.String()+"/", "Accept", "text/html")
	if code != http.StatusFound || !strings.Contains(h.Get("Location"), "/ipfs/"+root.String()+"/") || strings.Contains(h.Get("Location"), d.httpLn.Addr().String()) {
		t.Fatalf("non-holder on a browser request: %d %q", code, h.Get("Location"))
	}

	cc.Close()
	waitFor(t, 2*time.Minute, "the dead holder leaves the redirector's list", func() (bool, string) {
		ids := rankedIDs(a, root)
		return len(ids) == 2 && !strings.Contains(strings.Join(ids, " "), cc.ID().String()), strings.Join(ids, " ")
	})
}
