package catchup

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestTrigger(t *testing.T) {
	a, b := peer.ID("a"), peer.ID("b")
	t0 := time.Unix(1000, 0)
	type step struct {
		op   string // graft, leave, reset
		p    peer.ID
		at   time.Duration
		want bool
	}
	for _, tc := range []struct {
		name   string
		minGap time.Duration
		steps  []step
	}{
		{"first graft syncs, later ones do not", time.Minute, []step{
			{"graft", a, 0, true}, {"graft", b, time.Second, false}, {"graft", a, 2 * time.Second, false},
		}},
		{"a mesh that empties and forms again within MinGap: no second sync", time.Minute, []step{
			{"graft", a, 0, true}, {"leave", a, time.Second, false}, {"graft", b, 2 * time.Second, false},
		}},
		{"after MinGap it does", time.Minute, []step{
			{"graft", a, 0, true}, {"leave", a, time.Second, false}, {"graft", b, time.Minute, true},
		}},
		{"a non-empty mesh never triggers", time.Minute, []step{
			{"graft", a, 0, true}, {"graft", b, time.Second, false}, {"leave", a, 2 * time.Second, false}, {"graft", a, 2 * time.Minute, false},
		}},
		{"a topic left and joined again", time.Minute, []step{
			{"graft", a, 0, true}, {"graft", b, 0, false}, {"reset", "", time.Second, false}, {"graft", a, time.Hour, true},
		}},
		{"MinGap zero: only the first mesh", 0, []step{
			{"graft", a, 0, true}, {"leave", a, time.Second, false}, {"graft", a, time.Hour, false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &Trigger{MinGap: tc.minGap}
			for i, s := range tc.steps {
				got := false
				switch s.op {
				case "graft":
					got = tr.Graft(s.p, t0.Add(s.at))
				case "leave":
					tr.Leave(s.p)
				case "reset":
					tr.Reset()
				}
				if got != s.want {
					t.Fatalf("step %d (%s %s at %s) = %v, want %v", i, s.op, s.p, s.at, got, s.want)
				}
			}
		})
	}
}

// TestTracer: only the watched topic counts, and a disconnected peer
// leaves the mesh.
func TestTracer(t *testing.T) {
	now := time.Unix(1000, 0)
	var synced []peer.ID
	tr := &Tracer{Topic: "live", Trigger: &Trigger{MinGap: time.Minute}, Now: func() time.Time { return now },
		Sync: func(p peer.ID) { synced = append(synced, p) }}
	tr.Graft("a", "other")
	if len(synced) != 0 || tr.Trigger.MeshSize() != 0 {
		t.Fatal("a graft on another topic counted")
	}
	tr.Graft("a", "live")
	tr.Graft("b", "live")
	tr.RemovePeer("a")
	tr.Prune("b", "other")
	if tr.Trigger.MeshSize() != 1 {
		t.Fatalf("mesh size %d, want 1", tr.Trigger.MeshSize())
	}
	if len(synced) != 1 || synced[0] != "a" {
		t.Fatalf("synced with %v, want [a]", synced)
	}
}
