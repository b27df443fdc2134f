package relsync_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/mirrornet/mirrornet/internal/relsync"
	"github.com/mirrornet/mirrornet/protocol"
)

// appID makes a distinct valid app ID per name.
func appID(name string) string {
	return protocol.DeriveAppID(name, protocol.MaintainerSet{Keys: []string{"12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"}, Threshold: 1})
}

func chain(app string, versions []uint64, builds ...uint64) relsync.AppRecords {
	a := relsync.AppRecords{App: app}
	for _, v := range versions {
		a.Releases = append(a.Releases, relsync.Record{Version: v, Raw: []byte(fmt.Sprintf("%s rel %d", app, v))})
	}
	for i, v := range builds {
		a.Builds = append(a.Builds, relsync.Record{Version: v, Raw: []byte(fmt.Sprintf("%s build %d #%d", app, v, i))})
	}
	return a
}

func TestSummaryIsOrderIndependent(t *testing.T) {
	x, y := appID("x"), appID("y")
	a := relsync.Summarise([]relsync.AppRecords{chain(x, []uint64{1, 2}, 1, 2), chain(y, []uint64{1})}, nil)
	bx := chain(x, []uint64{1, 2}, 1, 2)
	slices.Reverse(bx.Builds)
	b := relsync.Summarise([]relsync.AppRecords{chain(y, []uint64{1}), bx}, nil)
	if a.Root != b.Root {
		t.Fatalf("same records, different roots: %s %s", a.Root, b.Root)
	}
	c := relsync.Summarise([]relsync.AppRecords{chain(x, []uint64{1, 2}, 1), chain(y, []uint64{1})}, nil)
	if c.Root == a.Root {
		t.Fatal("a missing build attestation does not change the root")
	}
	if e, _ := a.Entry(x); e.Version != 2 {
		t.Fatalf("latest of x: %d, want 2", e.Version)
	}
	sum := a.Listed()
	if err := sum.Validate(); err != nil {
		t.Fatalf("own summary does not validate: %v", err)
	}
	if empty := relsync.Summarise(nil, nil); empty.Root != protocol.ReleaseRoot(nil) || len(empty.Summary) != 0 {
		t.Fatalf("empty state: %+v", empty)
	}
}

// Summarise hashes again only the apps whose generation changed.
func TestSummaryReusesUnchangedApps(t *testing.T) {
	x, y := appID("x"), appID("y")
	ax, ay := chain(x, []uint64{1}), chain(y, []uint64{1})
	ax.Gen, ay.Gen = 1, 2
	first := relsync.Summarise([]relsync.AppRecords{ax, ay}, nil)
	// Same generation, other records: the previous hash is reused (so it
	// is the generation, not the bytes, that is compared).
	bx := chain(x, []uint64{1}, 1)
	bx.Gen = 1
	second := relsync.Summarise([]relsync.AppRecords{bx, ay}, first)
	if second.Root != first.Root {
		t.Fatal("an app with an unchanged generation was hashed again")
	}
	bx.Gen = 3
	third := relsync.Summarise([]relsync.AppRecords{bx, ay}, second)
	fresh := relsync.Summarise([]relsync.AppRecords{bx, ay}, nil)
	if third.Root == first.Root || third.Root != fresh.Root {
		t.Fatalf("a changed app's hash not recomputed: %s, fresh %s", third.Root, fresh.Root)
	}
}

func TestPlan(t *testing.T) {
	newer, same, older, missing, builds, followed := appID("newer"), appID("same"), appID("older"), appID("missing"), appID("builds"), appID("followed")
	f := chain(followed, []uint64{1})
	f.Follows = true
	unseen := appID("unseen")
	local := relsync.Summarise([]relsync.AppRecords{
		chain(newer, []uint64{1}), chain(same, []uint64{1, 2}), chain(older, []uint64{1, 2, 3}), chain(builds, []uint64{1}), f,
		{App: unseen, Follows: true}, // followed, no record yet
	}, nil)
	if _, ok := local.Entry(unseen); ok {
		t.Fatal("an app without records is in the summary")
	}
	remote := relsync.Summarise([]relsync.AppRecords{
		chain(newer, []uint64{1, 2}), chain(same, []uint64{1, 2}), chain(older, []uint64{1}), chain(missing, []uint64{1, 2}),
		chain(builds, []uint64{1}, 1), chain(followed, []uint64{1, 2}), chain(unseen, []uint64{1}),
	}, nil)
	got := relsync.Plan(local, remote.Summary, nil, 16)
	want := []protocol.ReleaseWantApp{{App: followed, After: 1}, {App: unseen}}
	if followed > unseen {
		want[0], want[1] = want[1], want[0]
	}
	// The rest in app ID order.
	rest := []protocol.ReleaseWantApp{{App: newer, After: 1}, {App: missing}, {App: builds, After: 1}}
	slices.SortFunc(rest, func(x, y protocol.ReleaseWantApp) int {
		if x.App < y.App {
			return -1
		}
		return 1
	})
	want = append(want, rest...)
	if !slices.Equal(got, want) {
		t.Fatalf("plan:\n got %+v\nwant %+v", got, want)
	}
	if got := relsync.Plan(local, remote.Summary, nil, 2); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("plan bounded to 2: %+v", got)
	}
	// A pair that taught nothing before is skipped until its hash changes.
	var fut relsync.Futile
	e, _ := remote.Entry(missing)
	fut.Add(missing, e.Hash)
	for _, w := range relsync.Plan(local, remote.Summary, fut.Has, 16) {
		if w.App == missing {
			t.Fatal("futile app asked for again")
		}
	}
	fut.Add(missing, "other")
	if !slices.ContainsFunc(relsync.Plan(local, remote.Summary, fut.Has, 16), func(w protocol.ReleaseWantApp) bool { return w.App == missing }) {
		t.Fatal("app skipped though the peer's hash changed")
	}
	if got := relsync.Plan(remote, remote.Summary, nil, 16); len(got) != 0 {
		t.Fatalf("in sync, plan wants %+v", got)
	}
}

func TestAnswerIsBounded(t *testing.T) {
	x, y := appID("x"), appID("y")
	s := relsync.Summarise([]relsync.AppRecords{chain(x, []uint64{1, 2, 3}, 1, 3, 2), chain(y, []uint64{1})}, nil)
	got := s.Answer([]protocol.ReleaseWantApp{{App: x, After: 1}, {App: y}, {App: appID("unknown")}}, 100, 1<<20)
	var names []string
	for _, r := range got {
		names = append(names, string(r[len(r)-min(len(r), 12):]))
	}
	want := []string{fmt.Sprintf("%s rel 2", x), fmt.Sprintf("%s rel 3", x), fmt.Sprintf("%s build 3 #1", x), fmt.Sprintf("%s build 2 #2", x),
		fmt.Sprintf("%s build 1 #0", x), fmt.Sprintf("%s rel 1", y)}
	if len(got) != len(want) {
		t.Fatalf("answer %q", got)
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Fatalf("answer[%d] = %q, want %q (all: %q)", i, got[i], want[i], names)
		}
	}
	if got := s.Answer([]protocol.ReleaseWantApp{{App: x}}, 2, 1<<20); len(got) != 2 {
		t.Fatalf("record bound 2: %d records", len(got))
	}
	one := len(fmt.Sprintf("%s rel 1", x))
	if got := s.Answer([]protocol.ReleaseWantApp{{App: x}}, 100, 2*one+1); len(got) != 2 {
		t.Fatalf("byte bound: %d records", len(got))
	}
}

func TestFutileIsBounded(t *testing.T) {
	f := relsync.Futile{Max: 3}
	for i := range 10 {
		f.Add(fmt.Sprint(i), "h")
		if f.Len() > 3 {
			t.Fatalf("futile memory holds %d apps, bound 3", f.Len())
		}
	}
	if !f.Has("9", "h") || f.Has("9", "other") {
		t.Fatal("latest entry lost or matched another hash")
	}
}

func TestSummaryValidation(t *testing.T) {
	x, y := appID("x"), appID("y")
	h := protocol.ReleaseAppHash(nil)
	if x > y {
		x, y = y, x
	}
	for name, s := range map[string]protocol.ReleaseSummary{
		"unsorted":   {Apps: []protocol.ReleaseAppSummary{{App: y, Version: 1, Hash: h}, {App: x, Version: 1, Hash: h}}},
		"duplicate":  {Apps: []protocol.ReleaseAppSummary{{App: x, Version: 1, Hash: h}, {App: x, Version: 1, Hash: h}}},
		"not an app": {Apps: []protocol.ReleaseAppSummary{{App: "app-x", Version: 1, Hash: h}}},
		"bad hash":   {Apps: []protocol.ReleaseAppSummary{{App: x, Version: 1, Hash: "ABC"}}},
		"version 0":  {Apps: []protocol.ReleaseAppSummary{{App: x, Hash: h}}},
		"too many":   {Apps: make([]protocol.ReleaseAppSummary, protocol.MaxReleaseSummaryApps+1)},
	} {
		if err := s.Validate(); err == nil {
			t.Errorf("%s: summary validates", name)
		}
	}
	w := protocol.ReleaseWant{Apps: []protocol.ReleaseWantApp{{App: x}, {App: x}}}
	if err := w.Validate(); err == nil {
		t.Error("want naming an app twice validates")
	}
	w = protocol.ReleaseWant{Apps: make([]protocol.ReleaseWantApp, protocol.MaxReleaseWantApps+1)}
	if err := w.Validate(); err == nil {
		t.Error("oversized want validates")
	}
}
