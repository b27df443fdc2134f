package gateway

import (
	"errors"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// TestBadInputIs4xx: malformed CIDs, paths and hosts get 400 (or 404
// where nothing is malformed but nothing is served), with one line that
// says what was wrong, and never a 5xx.
func TestBadInputIs4xx(t *testing.T) {
	f := newFixture(t, DefaultConfig())
	app := f.app.String()
	sub := func(label string) string { return label + ".ipfs.localhost:" + f.port }

	md5, _ := mh.Sum([]byte("x"), mh.MD5, -1)
	shortSha, _ := mh.Encode(make([]byte, 4), mh.SHA2_256)
	bigIdentity, _ := mh.Sum([]byte(strings.Repeat("i", 300)), mh.IDENTITY, -1)

	for _, tc := range []struct {
		name, target, host string
		want               int
		say                string // substring of the body
	}{
		{"bad base prefix", "/ipfs/!afybeigdyrzt?format=raw", "", 400, "invalid CID"},
		{"unknown multibase", "/ipfs/Zbafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi?format=raw", "", 400, "invalid CID"},
		{"base32 with bad chars", "/ipfs/bafybeig1111111111111111111111111111111111111111111111111111?format=raw", "", 400, "invalid CID"},
		{"truncated CID", "/ipfs/" + app[:20] + "?format=raw", "", 400, "invalid CID"},
		{"CID plus junk", "/ipfs/" + app + "zz?format=raw", "", 400, "invalid CID"},
		{"bad base58 v0", "/ipfs/Qm0OIl?format=raw", "", 400, "invalid CID"},
		{"not a CID", "/ipfs/hello?format=car", "", 400, "invalid CID"},
		{"unknown multihash", "/ipfs/" + cid.NewCidV1(cid.Raw, []byte{0xff, 0x7f, 2, 1, 2}).String() + "?format=raw", "", 400, "invalid CID"},
		{"insecure multihash md5", "/ipfs/" + cid.NewCidV1(cid.Raw, md5).String() + "?format=raw", "", 400, "invalid CID"},
		{"digest too short", "/ipfs/" + cid.NewCidV1(cid.Raw, shortSha).String() + "?format=raw", "", 400, "invalid CID"},
		{"identity too large", "/ipfs/" + cid.NewCidV1(cid.Raw, bigIdentity).String() + "?format=raw", "", 400, "invalid CID"},
		{"no CID", "/ipfs/", "", 400, "no CID"},
		{"bare namespace", "/ipfs", "", 400, "no CID"},
		{"empty segment CID", "/ipfs//" + app, "", 400, "no CID"},
		{"dotdot", "/ipfs/" + app + "/../" + app + "?format=car", "", 400, `".."`},
		{"dotdot escaped", "/ipfs/" + app + "/%2e%2e/x?format=car", "", 400, `".."`},
		{"dot", "/ipfs/" + app + "/./index.html?format=car", "", 400, `"."`},
		{"dotdot first", "/ipfs/../etc/passwd", "", 400, ""},
		{"overlong path", "/ipfs/" + app + "/" + strings.Repeat("a", MaxPathBytes), "", 400, "limit"},
		{"overlong CID", "/ipfs/b" + strings.Repeat("a", 3000) + "?format=raw", "", 400, "invalid CID"},
		{"bad format, trustless host", "/ipfs/" + app + "?format=nonsense", "", 406, "trustless"},
		{"bad entity-bytes", "/ipfs/" + f.file.String() + "?format=car&entity-bytes=5:1", "", 400, ""},
		{"garbage entity-bytes", "/ipfs/" + f.file.String() + "?format=car&entity-bytes=abc", "", 400, ""},
		{"bad dag-scope", "/ipfs/" + f.file.String() + "?format=car&dag-scope=everything", "", 400, ""},
		{"ipns", "/ipns/example.com", "", 404, "only /ipfs/"},
		{"ipns key", "/ipns/k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8", "", 404, "only /ipfs/"},
		{"p2p", "/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "", 404, "only /ipfs/"},
		{"ipns on subdomain host", "/ipns/example.com", "localhost:" + f.port, 404, "only /ipfs/"},
		{"garbage subdomain", "/", sub("garbage"), 400, "invalid CID"},
		{"garbage subdomain file", "/index.html", sub("not-a-cid"), 400, "invalid CID"},
		{"dotted subdomain", "/", "a.b.ipfs.localhost:" + f.port, 400, "invalid CID"},
		{"empty subdomain label", "/", ".ipfs.localhost:" + f.port, 400, "no CID"},
		{"overlong subdomain", "/", sub(strings.Repeat("b", 5000)), 400, ""},
		{"ipns subdomain", "/", "example-com.ipns.localhost:" + f.port, 404, "only /ipfs/"},
		{"p2p subdomain", "/", "abc.p2p.localhost:" + f.port, 404, "only /ipfs/"},
		{"subdomain dotdot", "/../../etc/passwd", sub(app), 400, ""},
		{"unheld valid CID", "/ipfs/bafkqaaa?format=raw", "", 404, "not held"},
		{"unheld subdomain", "/", sub("bafkqaaa"), 404, "not held"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, "GET", tc.target, tc.host)
			if r.status >= 500 {
				t.Fatalf("status %d (5xx) for bad input: %s", r.status, r.body)
			}
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
			body := strings.TrimSpace(string(r.body))
			if strings.Contains(body, "\n") || len(body) > 300 {
				t.Errorf("error body is not one short line: %q", body)
			}
			if !strings.Contains(body, tc.say) {
				t.Errorf("body %q does not say %q", body, tc.say)
			}
		})
	}
}

// TestRootOf is the pure validator, without HTTP.
func TestRootOf(t *testing.T) {
	good := "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
	for _, tc := range []struct {
		p   string
		err error
	}{
		{"/ipfs/" + good, nil},
		{"/ipfs/" + good + "/", nil},
		{"/ipfs/" + good + "/a/b.html", nil},
		{"/ipfs/" + good + "//a", nil},
		{"/ipfs/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", nil},
		{"/ipfs/", ErrBadPath},
		{"/ipfs/" + good + "/..", ErrBadPath},
		{"/ipfs/x", ErrBadCID},
		{"/ipns/x", ErrNamespace},
		{"/ipld/x", ErrNamespace},
		{"/other", ErrBadPath},
		{"/ipfs/" + good + "/" + strings.Repeat("x", MaxPathBytes), ErrBadPath},
	} {
		_, err := rootOf(tc.p)
		if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
			t.Errorf("rootOf(%.60q) = %v, want %v", tc.p, err, tc.err)
		}
	}
}
