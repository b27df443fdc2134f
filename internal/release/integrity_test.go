package release

import (
	"errors"
	"reflect"
	"testing"

	"github.com/mirrornet/mirrornet/protocol"
)

func TestCheckIntegrity(t *testing.T) {
	m := newMaintainers(t, 30, 1)
	builders := newMaintainers(t, 31, 3).names
	strangers := newMaintainers(t, 32, 3).names
	p := genesis(m, 1, 4, cid1, t0)
	p.Commit = "abc"
	p.Builders = &protocol.MaintainerSet{Keys: builders, Threshold: 2}
	rel := mustRecord(t, p)
	att := func(builder, cid string, version uint64) protocol.BuildAttestation {
		return protocol.BuildAttestation{Builder: builder, Seq: 1, Time: 1, App: rel.App, Version: version, Build: "make", CID: cid}
	}
	other := rel
	other.App = protocol.DeriveAppID("other", rel.Maintainers)
	cases := []struct {
		name     string
		builds   []protocol.BuildAttestation
		want     IntegrityState
		builders int
		unlisted int
		str      string
	}{
		{"none", nil, Unverified, 0, 0, "unverified · 0 of 2 builders"},
		{"one of two", []protocol.BuildAttestation{att(builders[0], cid1, 4)}, Unverified, 1, 0, "unverified · 1 of 2 builders"},
		{"same builder twice counts once", []protocol.BuildAttestation{att(builders[0], cid1, 4), att(builders[0], cid1, 4)}, Unverified, 1, 0, ""},
		{"two builders", []protocol.BuildAttestation{att(builders[0], cid1, 4), att(builders[1], cid1, 4)}, Verified, 2, 0, "verified · 2 builders"},
		{"strangers change nothing", []protocol.BuildAttestation{att(builders[0], cid1, 4), att(strangers[0], cid1, 4), att(strangers[1], cid1, 4)}, Unverified, 1, 2, "unverified · 1 of 2 builders"},
		{"a stranger cannot turn it red", []protocol.BuildAttestation{att(builders[0], cid1, 4), att(builders[1], cid1, 4), att(strangers[0], cid2, 4)}, Verified, 2, 1, "verified · 2 builders"},
		{"a maintainer not declared is unlisted", []protocol.BuildAttestation{att(m.names[0], cid2, 4)}, Unverified, 0, 1, ""},
		{"other version ignored", []protocol.BuildAttestation{att(builders[0], cid2, 3)}, Unverified, 0, 0, ""},
		{"one diverging builder", []protocol.BuildAttestation{att(builders[0], cid1, 4), att(builders[1], cid1, 4), att(builders[2], cid2, 4)}, Diverges, 2, 0, ""},
		{"other commit says nothing", []protocol.BuildAttestation{withCommit(att(builders[0], cid2, 4), "other"), withCommit(att(builders[1], cid1, 4), "abc")}, Unverified, 1, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := CheckIntegrity(rel, c.builds)
			if got.State != c.want || len(got.Builders) != c.builders || len(got.Unlisted) != c.unlisted {
				t.Fatalf("got %+v, want %s with %d builders, %d unlisted", got, c.want, c.builders, c.unlisted)
			}
			if c.str != "" && got.String() != c.str {
				t.Fatalf("String() = %q, want %q", got.String(), c.str)
			}
			if c.want == Diverges && (len(got.Divergent) != 1 || got.String()[:8] != "diverges") {
				t.Fatalf("divergent = %v, %q", got.Divergent, got.String())
			}
		})
	}
	if CheckIntegrity(other, []protocol.BuildAttestation{att(builders[0], cid1, 4), att(builders[1], cid1, 4)}).State != Unverified {
		t.Fatal("attestation for another app counted")
	}
	undeclared := rel
	undeclared.Builders = nil
	if got := CheckIntegrity(undeclared, []protocol.BuildAttestation{att(builders[0], cid1, 4), att(builders[1], cid2, 4)}); got.State != Unverified || got.String() != "unverified · no builders declared" {
		t.Fatalf("no builders declared: %+v %q", got, got.String())
	}
}

func TestParseAppRef(t *testing.T) {
	id := protocol.DeriveAppID("demo", protocol.MaintainerSet{Keys: []string{"k"}, Threshold: 1})
	for in, want := range map[string]AppRef{id: {App: id}, id + "@3": {App: id, Version: 3}} {
		got, err := ParseAppRef(in)
		if err != nil || got != want || got.String() != in {
			t.Errorf("%q: %+v %v", in, got, err)
		}
	}
	for _, in := range []string{"", "demo", id + "@", id + "@0", id + "@-1", id + "@03", id + "@x", id + "@1@2", "@3"} {
		if _, err := ParseAppRef(in); !errors.Is(err, ErrBadRef) {
			t.Errorf("%q: %v", in, err)
		}
	}
}

func TestDiffFiles(t *testing.T) {
	got := map[string]string{"index.html": "a", "app.js": "b2", "new.txt": "c"}
	want := map[string]string{"index.html": "a", "app.js": "b1", "gone.css": "d"}
	d := DiffFiles(got, want)
	exp := []FileChange{
		{Path: "app.js", Kind: "changed", Got: "b2", Want: "b1"},
		{Path: "gone.css", Kind: "missing", Want: "d"},
		{Path: "new.txt", Kind: "added", Got: "c"},
	}
	if !reflect.DeepEqual(d, exp) {
		t.Fatalf("diff = %+v", d)
	}
	if DiffFiles(want, want) != nil {
		t.Fatal("identical trees differ")
	}
}

func withCommit(b protocol.BuildAttestation, commit string) protocol.BuildAttestation {
	b.Commit = commit
	return b
}
