package apphost

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/mirrornet/mirrornet/protocol"
)

type fakeGW struct{}

func (fakeGW) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Host, ".ipfs.") || strings.HasPrefix(r.URL.Path, "/ipfs/") {
			io.WriteString(w, "gateway")
			return
		}
		next.ServeHTTP(w, r)
	})
}
func (fakeGW) ServeRoot(w http.ResponseWriter, r *http.Request, root cid.Cid) {
	io.WriteString(w, "root "+root.String()+" "+r.URL.Path)
}
func (fakeGW) ServePath(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "path "+r.URL.Path)
}

type fakeReleases struct{ cur atomic.Pointer[cid.Cid] }

func (f *fakeReleases) Current(string) (cid.Cid, bool) {
	c := f.cur.Load()
	if c == nil {
		return cid.Undef, false
	}
	return *c, true
}

func testCID(s string) cid.Cid {
	h, _ := mh.Sum([]byte(s), mh.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, h)
}

func appID() string {
	return protocol.DeriveAppID("demo", protocol.MaintainerSet{Threshold: 1, Keys: []string{"k"}})
}

func router(t *testing.T, strict bool) (*Router, *fakeReleases) {
	t.Helper()
	rel := &fakeReleases{}
	mirror := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "mirror") })
	b, err := ParseBinding("app.example.org=" + appID())
	if err != nil {
		t.Fatal(err)
	}
	rt, err := New(Config{Hosts: []string{"localhost", "mirror.example.org"}, Apps: []Binding{b}, Strict: strict}, fakeGW{}, rel, mirror, nil)
	if err != nil {
		t.Fatal(err)
	}
	rt.HandleOrigin("/.mirrornet/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hook") }))
	return rt, rel
}

func do(rt http.Handler, host, path string) (int, string) {
	r := httptest.NewRequest("GET", "http://x"+path, nil)
	r.Host = host
	w := httptest.NewRecorder()
	rt.ServeHTTP(w, r)
	return w.Code, w.Body.String()
}

func TestRoutesByHost(t *testing.T) {
	rt, rel := router(t, true)
	c1, c2 := testCID("v1"), testCID("v2")
	rel.cur.Store(&c1)
	sub := c1.String() + ".ipfs.mirror.example.org"
	for _, tc := range []struct{ host, path, want string }{
		{"mirror.example.org", "/", "mirror"},
		{"MIRROR.example.org:8443", "/", "mirror"},
		{"127.0.0.1:8080", "/", "mirror"},
		{"[::1]:8080", "/", "mirror"},
		{"app.example.org", "/index.html", "root " + c1.String() + " /index.html"},
		{"app.example.org.", "/", "root " + c1.String() + " /"},
		{"app.example.org", "/.mirrornet/status", "hook"},
		{"app.example.org", "/ipfs/" + c1.String() + "?format=car", "path /ipfs/" + c1.String()},
		{sub, "/", "gateway"},
		{sub, "/.mirrornet/", "hook"},
		{"mirror.example.org", "/.mirrornet/", "mirror"}, // hooks are for app origins
		{"bafy.ipfs.localhost:8080", "/", "gateway"},
	} {
		code, body := do(rt, tc.host, tc.path)
		if code != 200 || body != tc.want {
			t.Errorf("%s%s: %d %q, want %q", tc.host, tc.path, code, body, tc.want)
		}
	}
	// A newer release replaces the old one between two requests.
	rel.cur.Store(&c2)
	if _, body := do(rt, "app.example.org", "/"); body != "root "+c2.String()+" /" {
		t.Fatalf("after the switch: %q", body)
	}
	for _, host := range []string{"evil.example.org", "app.example.org.evil.org", "x.y.mirror.example.org", "example.org", ""} {
		if code, body := do(rt, host, "/"); code != http.StatusNotFound || !strings.Contains(body, ErrUnknownHost.Error()) {
			t.Errorf("host %q: %d %q, want 404 unknown host", host, code, body)
		}
	}
	rel.cur.Store(nil)
	if code, _ := do(rt, "app.example.org", "/"); code != http.StatusServiceUnavailable {
		t.Fatalf("app not held: %d, want 503", code)
	}
	// Not strict: any name is the mirror (a private mirror).
	loose, _ := router(t, false)
	if code, body := do(loose, "whatever.lan", "/"); code != 200 || body != "mirror" {
		t.Fatalf("loose router: %d %q", code, body)
	}
}

func TestParseBinding(t *testing.T) {
	b, err := ParseBinding(" App.Example.org. = " + appID())
	if err != nil || b.Host != "app.example.org" || b.App != appID() {
		t.Fatalf("%+v %v", b, err)
	}
	for _, s := range []string{"", "app.example.org", "app.example.org=", "=" + appID(), "app=" + appID(),
		"192.0.2.1=" + appID(), "app.example.org:443=" + appID(), "*.example.org=" + appID(), "app.example.org=bafy"} {
		if _, err := ParseBinding(s); !errors.Is(err, ErrBinding) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want ErrBinding", s, err)
		}
	}
	b2, _ := ParseBinding("mirror.example.org=" + appID())
	if err := (Config{Hosts: []string{"mirror.example.org"}, Apps: []Binding{b2}}).Validate(); !errors.Is(err, ErrConfig) {
		t.Fatalf("app on the mirror's own host: %v", err)
	}
	if err := (Config{Apps: []Binding{b, b}}).Validate(); !errors.Is(err, ErrConfig) {
		t.Fatalf("host twice: %v", err)
	}
}
