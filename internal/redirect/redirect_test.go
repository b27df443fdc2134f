package redirect

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/mirrornet/mirrornet/protocol"
)

func testRoot(t testing.TB) cid.Cid {
	h, err := mh.Sum([]byte("bundle"), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.DagProtobuf, h)
}

// world: every kind of mirror the redirector must not send anyone to, and
// three it may.
func world() []Candidate {
	return []Candidate{
		{PeerID: "self", URL: "https://self.example", Alive: true, Holds: false, Self: true, Evidence: Verified},
		{PeerID: "dead", URL: "https://dead.example", Alive: false, Holds: true, Evidence: Verified},
		{PeerID: "nohold", URL: "https://nohold.example", Alive: true, Holds: false, Evidence: Verified},
		{PeerID: "failing", URL: "https://failing.example", Alive: true, Holds: true, Evidence: Failing, Domain: "asn:64500"},
		{PeerID: "samedomain", URL: "https://samedomain.example", Alive: true, Holds: true, Evidence: Verified, Domain: "asn:64500"},
		{PeerID: "nourl", Alive: true, Holds: true, Evidence: Verified},
		{PeerID: "slow", URL: "https://slow.example:8443", Alive: true, Holds: true, Evidence: Verified, Domain: "asn:1", Latency: 80 * time.Millisecond},
		{PeerID: "fast", URL: "https://fast.example", Alive: true, Holds: true, Evidence: Verified, Domain: "asn:2", Latency: 5 * time.Millisecond},
		{PeerID: "new", URL: "http://192.0.2.9:8080", Alive: true, Holds: true, Evidence: "", Domain: "asn:3", Latency: time.Millisecond},
		{PeerID: "degraded", URL: "https://degraded.example", Alive: true, Holds: true, Evidence: Degraded, Domain: "asn:4", Latency: time.Millisecond},
	}
}

func TestRankNeverPicksBadMirrors(t *testing.T) {
	ranked, excluded := Rank(world())
	var got []string
	for _, c := range ranked {
		got = append(got, c.PeerID)
	}
	if strings.Join(got, ",") != "fast,slow,new,degraded" {
		t.Fatalf("ranked %v, want fast,slow,new,degraded", got)
	}
	reasons := map[string]string{}
	for _, e := range excluded {
		reasons[e.PeerID] = e.Reason
	}
	for _, id := range []string{"self", "dead", "nohold", "failing", "samedomain", "nourl"} {
		if reasons[id] == "" {
			t.Errorf("%s not excluded", id)
		}
	}
	// This mirror, holding it, is first among the verified.
	w := world()
	w[0].Holds = true
	ranked, _ = Rank(w)
	if ranked[0].PeerID != "self" {
		t.Fatalf("self holding: first is %s", ranked[0].PeerID)
	}
}

func TestBrowserURL(t *testing.T) {
	root := testRoot(t)
	for _, tc := range []struct{ base, rest, want string }{
		{"https://mirror.example.org", "", "https://" + root.String() + ".ipfs.mirror.example.org/"},
		{"http://mirror.example.org:8080", "/a/b.html", "http://" + root.String() + ".ipfs.mirror.example.org:8080/a/b.html"},
		{"http://192.0.2.1:8080", "", "http://192.0.2.1:8080/ipfs/" + root.String() + "/"},
		{"http://[2001:db8::1]:80", "/x", "http://[2001:db8::1]:80/ipfs/" + root.String() + "/x"},
	} {
		if got := BrowserURL(tc.base, root, tc.rest); got != tc.want {
			t.Errorf("%s %q: %s, want %s", tc.base, tc.rest, got, tc.want)
		}
	}
	// A CID whose base32 form is longer than a DNS label goes base36.
	h, _ := mh.Sum([]byte("x"), mh.BLAKE2B_MIN+31, -1) // blake2b-256: a 3-byte multihash code
	long := cid.NewCidV1(cid.DagJSON, h)
	label := DNSLabel(long)
	if len(long.String()) <= 63 || len(label) > 63 || label[0] != 'k' {
		t.Fatalf("base32 %d bytes, label %q", len(long.String()), label)
	}
	if back, err := cid.Decode(label); err != nil || !back.Equals(long) {
		t.Fatalf("base36 label does not decode back: %v", err)
	}
}

// linkValue is one parsed RFC 8288 link-value.
type linkValue struct {
	target string
	params map[string]string
}

// parseLinks parses Link header field values per RFC 8288 section 3:
// link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param ), several
// separated by commas.
func parseLinks(t *testing.T, values []string) []linkValue {
	t.Helper()
	var out []linkValue
	for _, v := range values {
		for len(strings.TrimSpace(v)) > 0 {
			v = strings.TrimLeft(v, " \t,")
			if !strings.HasPrefix(v, "<") {
				t.Fatalf("link-value does not start with '<': %q", v)
			}
			end := strings.IndexByte(v, '>')
			if end < 0 {
				t.Fatalf("unterminated URI-Reference in %q", v)
			}
			lv := linkValue{target: v[1:end], params: map[string]string{}}
			v = v[end+1:]
			for {
				v = strings.TrimLeft(v, " \t")
				if !strings.HasPrefix(v, ";") {
					break
				}
				v = strings.TrimLeft(v[1:], " \t")
				i := strings.IndexAny(v, ";,")
				if i < 0 {
					i = len(v)
				}
				kv := strings.TrimSpace(v[:i])
				k, val, ok := strings.Cut(kv, "=")
				if !ok || k == "" || strings.ContainsAny(k, " \t\"") {
					t.Fatalf("malformed link-param %q", kv)
				}
				lv.params[strings.ToLower(k)] = strings.Trim(val, "\"")
				v = v[i:]
			}
			out = append(out, lv)
		}
	}
	return out
}

type fakeSource struct {
	cands []Candidate
	root  cid.Cid
	app   string
}

func (f fakeSource) Candidates(cid.Cid) []Candidate { return append([]Candidate(nil), f.cands...) }
func (f fakeSource) Release(app string) (cid.Cid, bool) {
	return f.root, app == f.app
}

func TestRedirectWithLinkHeaders(t *testing.T) {
	root := testRoot(t)
	app := protocol.DeriveAppID("demo", protocol.MaintainerSet{Threshold: 1, Keys: []string{"k"}})
	h := New(fakeSource{cands: world(), root: root, app: app}, func() time.Time { return time.Unix(1e9, 0) })
	mux := http.NewServeMux()
	h.Routes(mux)

	r := httptest.NewRequest("GET", "http://self.example/app/"+app, nil)
	r.Header.Set("Accept", "text/html")
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	if w.Code != http.StatusFound {
		t.Fatalf("status %d %q", w.Code, w.Body.String())
	}
	want := "https://" + root.String() + ".ipfs.fast.example/"
	if loc := w.Header().Get("Location"); loc != want {
		t.Fatalf("Location %q, want %q", loc, want)
	}
	links := parseLinks(t, w.Header().Values("Link"))
	if len(links) != 4 {
		t.Fatalf("%d links, want 4 (every eligible mirror)", len(links))
	}
	for i, l := range links {
		u, err := url.Parse(l.target)
		if err != nil || !u.IsAbs() {
			t.Errorf("link %d target %q is not an absolute URI", i, l.target)
		}
		if l.params["rel"] != "duplicate" {
			t.Errorf("link %d rel %q", i, l.params["rel"])
		}
		pri, err := strconv.Atoi(l.params["pri"])
		if err != nil || pri != i+1 || pri < 1 || pri > 999999 {
			t.Errorf("link %d pri %q, want %d (RFC 6249: 1..999999, ascending)", i, l.params["pri"], i+1)
		}
		for _, bad := range []string{"dead", "nohold", "failing", "samedomain", "self."} {
			if strings.Contains(l.target, bad) {
				t.Errorf("link to a mirror that must not be used: %s", l.target)
			}
		}
	}

	// The listing: JSON and Metalink.
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", "/app/"+app+"/mirrors.json", nil))
	var l Listing
	if err := json.Unmarshal(w.Body.Bytes(), &l); err != nil || len(l.Mirrors) != 4 || l.Mirrors[0].PeerID != "fast" || len(l.Excluded) != 6 {
		t.Fatalf("mirrors.json: %v %s", err, w.Body.String())
	}
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", "/app/"+app+"/mirrors.meta4", nil))
	var ml struct {
		XMLName xml.Name
		File    struct {
			Name string `xml:"name,attr"`
			URLs []struct {
				Priority int    `xml:"priority,attr"`
				URL      string `xml:",chardata"`
			} `xml:"url"`
		} `xml:"file"`
	}
	if err := xml.Unmarshal(w.Body.Bytes(), &ml); err != nil || ml.XMLName.Space != "urn:ietf:params:xml:ns:metalink" ||
		ml.File.Name != root.String()+".car" || len(ml.File.URLs) != 4 ||
		ml.File.URLs[0].URL != "https://fast.example/ipfs/"+root.String()+"?format=car" {
		t.Fatalf("meta4: %v %s", err, w.Body.String())
	}

	// Nobody eligible: 503, never a redirect to a bad mirror.
	bad := world()[:6]
	h2 := New(fakeSource{cands: bad, root: root, app: app}, nil)
	mux2 := http.NewServeMux()
	h2.Routes(mux2)
	w = httptest.NewRecorder()
	mux2.ServeHTTP(w, httptest.NewRequest("GET", "/app/"+app, nil))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Location") != "" {
		t.Fatalf("no eligible mirror: %d Location %q", w.Code, w.Header().Get("Location"))
	}
	// Unknown app, malformed app.
	for path, code := range map[string]int{"/app/" + protocol.DeriveAppID("other", protocol.MaintainerSet{Threshold: 1, Keys: []string{"k"}}): 404, "/app/nope": 400} {
		w = httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != code {
			t.Errorf("%s: %d, want %d", path, w.Code, code)
		}
	}
}

// The best mirror being this one, at the URL asked for, is served, not
// redirected in a loop.
func TestNoRedirectToItself(t *testing.T) {
	root := testRoot(t)
	cands := []Candidate{{PeerID: "self", URL: "http://127.0.0.1:8080", Alive: true, Holds: true, Self: true, Evidence: Verified}}
	h := New(fakeSource{cands: cands, root: root}, nil)
	r := httptest.NewRequest("GET", "http://127.0.0.1:8080/ipfs/"+root.String()+"/", nil)
	w := httptest.NewRecorder()
	if h.Redirect(w, r, root, "/") {
		t.Fatalf("redirected to itself: %v", w.Header())
	}
	resp := w.Result()
	if b, _ := io.ReadAll(resp.Body); len(b) != 0 {
		t.Fatal("wrote a body")
	}
}
