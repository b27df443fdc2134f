package announce

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestParsePublicURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://mirror.example.org", "https://mirror.example.org"},
		{"https://Mirror.Example.org/", "https://mirror.example.org"},
		{"http://mirror.example.org:8080", "http://mirror.example.org:8080"},
		{"http://192.0.2.1:8080", "http://192.0.2.1:8080"},
		{"http://[2001:db8::1]:8080", "http://[2001:db8::1]:8080"},
		{"https://mirror.example.org.", "https://mirror.example.org"},
	} {
		p, err := ParsePublicURL(tc.in)
		if err != nil || p.String() != tc.want {
			t.Errorf("%q: %q %v, want %q", tc.in, p.String(), err, tc.want)
		}
	}
	for _, in := range []string{
		"", "mirror.example.org", "ftp://mirror.example.org", "https://", "https://user:pw@mirror.example.org",
		"https://mirror.example.org/app", "https://mirror.example.org/?a=1", "http://0.0.0.0:8080", "http://[::]:8080",
		"https://-bad-.example.org", "https://mirror.example.org:0", "https://mirror.example.org:70000",
		"https://mir ror.example.org", "https://" + strings.Repeat("a", 64) + ".example.org",
	} {
		_, err := ParsePublicURL(in)
		if !errors.Is(err, ErrPublicURL) {
			t.Errorf("%q: err %v, want ErrPublicURL", in, err)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error is more than one line", in)
		}
	}
}

func TestIsName(t *testing.T) {
	for in, want := range map[string]bool{"https://mirror.example.org": true, "http://192.0.2.1": false, "http://[::1]:1": false} {
		p, _ := ParsePublicURL(in)
		if p.IsName() != want {
			t.Errorf("%s: IsName %v", in, !want)
		}
	}
}

func TestWildcardIsNeverAnnounced(t *testing.T) {
	for _, bound := range []string{"0.0.0.0:8080", "[::]:8080"} {
		a, err := New("", netip.MustParseAddrPort(bound))
		if err != nil {
			t.Fatal(err)
		}
		if u := a.URL(); u != "" {
			t.Fatalf("%s with no observation announces %q, want nothing", bound, u)
		}
		a.Observe("peer-a", netip.MustParseAddr("0.0.0.0"))
		a.Observe("peer-b", netip.MustParseAddr("::"))
		a.Observe("peer-c", netip.MustParseAddr("fe80::1"))
		if u := a.URL(); u != "" {
			t.Fatalf("%s: unusable observations announced as %q", bound, u)
		}
		if !a.Observe("peer-a", netip.MustParseAddr("198.51.100.7")) {
			t.Fatal("first usable observation did not change the URL")
		}
		if u := a.URL(); u != "http://198.51.100.7:8080" {
			t.Fatalf("announced %q, want the observed address", u)
		}
	}
}

func TestMostObserversWin(t *testing.T) {
	a, _ := New("", netip.MustParseAddrPort("0.0.0.0:80"))
	a.Observe("p1", netip.MustParseAddr("127.0.0.1"))
	a.Observe("p2", netip.MustParseAddr("203.0.113.9"))
	// A tie: the globally reachable address wins over loopback.
	if u := a.URL(); u != "http://203.0.113.9:80" {
		t.Fatalf("tie gave %q", u)
	}
	a.Observe("p3", netip.MustParseAddr("127.0.0.1"))
	if u := a.URL(); u != "http://127.0.0.1:80" {
		t.Fatalf("two observers against one gave %q", u)
	}
	// One observer repeating itself counts once.
	a.Observe("p2", netip.MustParseAddr("203.0.113.9"))
	a.Observe("p2", netip.MustParseAddr("203.0.113.9"))
	if u := a.URL(); u != "http://127.0.0.1:80" {
		t.Fatalf("repeats counted: %q", u)
	}
	a.Forget("p1")
	a.Forget("p3")
	if u := a.URL(); u != "http://203.0.113.9:80" {
		t.Fatalf("after forgetting: %q", u)
	}
	a.Observe("v6", netip.MustParseAddr("::ffff:203.0.113.9")) // mapped: same address
	b, _ := New("", netip.MustParseAddrPort("[::]:443"))
	b.Observe("x", netip.MustParseAddr("2001:db8::5"))
	if u := b.URL(); u != "http://[2001:db8::5]:443" {
		t.Fatalf("IPv6: %q", u)
	}
}

func TestObserversAreBounded(t *testing.T) {
	a, _ := New("", netip.MustParseAddrPort("0.0.0.0:80"))
	for i := range MaxObservers {
		a.Observe(fmt.Sprint("honest", i), netip.MustParseAddr("203.0.113.9"))
	}
	for i := range 10 * MaxObservers {
		a.Observe(fmt.Sprint("sybil", i), netip.MustParseAddr("192.0.2.66"))
	}
	if u := a.URL(); u != "http://203.0.113.9:80" || len(a.obs) != MaxObservers {
		t.Fatalf("after a flood: %q with %d observers", u, len(a.obs))
	}
}

func TestFixedURLs(t *testing.T) {
	a, _ := New("https://mirror.example.org/", netip.MustParseAddrPort("0.0.0.0:8080"))
	a.Observe("p", netip.MustParseAddr("198.51.100.7"))
	if a.URL() != "https://mirror.example.org" || !a.Fixed() {
		t.Fatalf("public URL: %q", a.URL())
	}
	b, _ := New("", netip.MustParseAddrPort("127.0.0.1:9090"))
	if b.URL() != "http://127.0.0.1:9090" {
		t.Fatalf("concrete listen address: %q", b.URL())
	}
	if _, err := New("nope", netip.MustParseAddrPort("127.0.0.1:1")); !errors.Is(err, ErrPublicURL) {
		t.Fatalf("bad public URL: %v", err)
	}
}

func TestNeedsObservation(t *testing.T) {
	wild := netip.MustParseAddrPort("0.0.0.0:8080")
	err := NeedsObservation(wild, "", false, "--public-url")
	if !errors.Is(err, ErrWildcard) || !strings.Contains(err.Error(), "--public-url") {
		t.Fatalf("err %v, want ErrWildcard naming --public-url", err)
	}
	for _, tc := range []struct {
		l    netip.AddrPort
		pub  string
		meet bool
	}{{wild, "https://m.example", false}, {wild, "", true}, {netip.MustParseAddrPort("127.0.0.1:1"), "", false}} {
		if err := NeedsObservation(tc.l, tc.pub, tc.meet, "--public-url"); err != nil {
			t.Errorf("%v %q %v: %v", tc.l, tc.pub, tc.meet, err)
		}
	}
}
