package replicate

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

// A Follower fetches a followed bundle until it is held and says so; a
// bundle whose root declares more than the storage limit is refused after
// its root block, once, with the reason, and not fetched further.
func TestFollowerHoldsOrRefuses(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a, b1, b2 := newNode(t, mn), newNode(t, mn), newNode(t, mn)
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	res := publish(t, a, makeTree(t, 5))
	b1.f.set(a.h)
	b2.f.set(a.h)

	for _, tc := range []struct {
		name       string
		b          *node
		maxStorage int64
		refused    string
	}{
		{"fits", b1, 0, ""},
		{"too large", b2, 1 << 20, RefusedTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.b
			held := make(chan cid.Cid, 1)
			refused := make(chan string, 4)
			fl, err := NewFollower(b.r, b.st, FollowConfig{Retry: 10 * time.Millisecond, MaxRetry: time.Second, MaxStorage: tc.maxStorage},
				FollowHooks{
					Held:    func(c cid.Cid) { held <- c },
					Refused: func(_ cid.Cid, reason string) { refused <- reason },
				}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer fl.Close()
			if err := b.st.Follow(res.Root); err != nil {
				t.Fatal(err)
			}
			fl.Start(res.Root)
			guard := time.After(long) // failure guard only
			if tc.refused == "" {
				select {
				case c := <-held:
					if c != res.Root || !b.st.Held(res.Root) {
						t.Fatalf("held %s, store holds it: %v", c, b.st.Held(res.Root))
					}
				case r := <-refused:
					t.Fatalf("refused: %s", r)
				case <-guard:
					t.Fatal("never held")
				}
				if _, running := fl.State(res.Root); running {
					t.Error("a held bundle still has a fetch")
				}
				return
			}
			select {
			case r := <-refused:
				if r != tc.refused {
					t.Fatalf("refused as %q, want %q", r, tc.refused)
				}
			case <-held:
				t.Fatal("a bundle over the limit was fetched")
			case <-guard:
				t.Fatal("never refused")
			}
			err = fl.RefusedError(res.Root)
			if !errors.Is(err, ErrBundleTooLarge) && !strings.Contains(fmt.Sprint(err), "larger than --max-storage") {
				t.Fatalf("RefusedError: %v", err)
			}
			st, ok := fl.State(res.Root)
			if !ok || st.Refused != tc.refused || st.Progress.Blocks > 1 {
				t.Fatalf("state %+v (%v): want refused after at most the root block", st, ok)
			}
			if rs := fl.Refused(); len(rs) != 1 || rs[0].CID != res.Root {
				t.Fatalf("Refused() = %+v", rs)
			}
			fl.Stop(res.Root)
			if _, ok := fl.State(res.Root); ok {
				t.Fatal("Stop left the fetch")
			}
			select {
			case r := <-refused:
				t.Fatalf("refused again (%s) without storage freed", r)
			default:
			}
		})
	}
}
