package httpedge

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// guard bounds how long a test waits for something that must happen; it is
// a failure guard, not a timing assertion.
const guard = 60 * time.Second

func serve(t *testing.T, cfg Config, h http.Handler) (*Edge, string) {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := e.Server(h)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return e, ln.Addr().String()
}

// clientFrom is an HTTP client whose connections come from the loopback
// address src (127.0.0.0/8 is all loopback on Linux).
func clientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// blocker is a handler that holds every request until released.
type blocker struct {
	entered chan struct{}
	release chan struct{}
}

func newBlocker() *blocker {
	return &blocker{entered: make(chan struct{}, 1024), release: make(chan struct{})}
}

func (b *blocker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/fast" {
		io.WriteString(w, "ok")
		return
	}
	b.entered <- struct{}{}
	<-b.release
	io.WriteString(w, "done")
}

func get(t *testing.T, c *http.Client, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestCapAnswers503WithRetryAfter(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxInFlight, cfg.MaxPerClient = 3, 3
	b := newBlocker()
	e, addr := serve(t, cfg, b)
	errs := make(chan error, 3)
	for i := range 3 {
		// Three clients on three addresses fill the server.
		c := clientFrom("127.0.0." + string(rune('1'+i)))
		go func() {
			resp, err := c.Get("http://" + addr + "/slow")
			if err == nil {
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	for range 3 {
		<-b.entered
	}
	if n := e.InFlight(); n != 3 {
		t.Fatalf("in flight %d, want 3", n)
	}
	code, h, body := get(t, clientFrom("127.0.0.9"), "http://"+addr+"/fast")
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") != "2" || !strings.Contains(body, "busy") {
		t.Fatalf("full server answered %d Retry-After %q %q, want 503 with Retry-After 2", code, h.Get("Retry-After"), body)
	}
	close(b.release)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if code, _, _ := get(t, clientFrom("127.0.0.9"), "http://"+addr+"/fast"); code != http.StatusOK {
		t.Fatalf("after the slots freed: %d, want 200", code)
	}
}

func TestOneClientCannotTakeEverySlot(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxInFlight, cfg.MaxPerClient = 100, 4
	b := newBlocker()
	defer close(b.release)
	_, addr := serve(t, cfg, b)
	hog := clientFrom("127.0.0.1")
	for range 4 {
		go func() {
			if resp, err := hog.Get("http://" + addr + "/slow"); err == nil {
				resp.Body.Close()
			}
		}()
	}
	for range 4 {
		<-b.entered
	}
	if code, _, body := get(t, hog, "http://"+addr+"/fast"); code != http.StatusServiceUnavailable || !strings.Contains(body, "client_busy") {
		t.Fatalf("fifth request of one client: %d %q, want 503 client_busy", code, body)
	}
	if code, _, body := get(t, clientFrom("127.0.0.2"), "http://"+addr+"/fast"); code != http.StatusOK || body != "ok" {
		t.Fatalf("another client: %d %q, want 200 ok", code, body)
	}
}

func TestForwardedHostOnlyFromTrustedProxies(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Host+"|"+r.Header.Get("X-Forwarded-Host")+"|"+r.Header.Get("X-Forwarded-Proto"))
	})
	trusted, err := ParseCIDRs([]string{"10.0.0.0/8", "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.TrustedProxies = trusted
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := e.Handler(echo)
	for _, tc := range []struct {
		remote, want string
	}{
		{"203.0.113.5:4000", "mirror.example||"},             // a stranger: header dropped
		{"[2001:db8::1]:4000", "mirror.example||"},           // IPv6 stranger
		{"10.1.2.3:4000", "app.example.org||"},               // trusted range
		{"192.0.2.7:555", "app.example.org||"},               // trusted single address
		{"192.0.2.8:555", "mirror.example||"},                // its neighbour is not
		{"[::ffff:10.9.9.9]:1", "app.example.org||"},         // IPv4-mapped form of a trusted address
		{"not-an-address", "mirror.example||"},               // unknown peer: not trusted
		{"[fe80::1%eth0]:4000", "mirror.example||"},          // zone stripped, still a stranger
		{"10.0.0.1:1", "app.example.org||"},                  // network address of the range
		{"11.0.0.1:1", "mirror.example||"},                   // just outside
		{"127.0.0.1:9", "mirror.example||"},                  // loopback is not trusted by default
		{"[::1]:9", "mirror.example||"},                      // neither is ::1
		{"192.0.2.7:1", "app.example.org||"},                 // any port of the trusted address
		{"10.255.255.255:65535", "app.example.org||"},        // broadcast end of the range
		{"[2001:db8::10.0.0.1]:1", "mirror.example||"},       // an IPv6 address is not the IPv4 range
		{"192.0.2.7", "app.example.org||"},                   // RemoteAddr without a port
		{"[::ffff:192.0.2.7]:80", "app.example.org||"},       // mapped single address
		{"0.0.0.0:1", "mirror.example||"},                    // unspecified
		{"255.255.255.255:1", "mirror.example||"},            // broadcast
		{"10.0.0.0:0", "app.example.org||"},                  // port 0
		{"[::ffff:11.0.0.1]:1", "mirror.example||"},          // mapped outsider
		{"[2001:db8::ffff:0a00:0001]:1", "mirror.example||"}, // looks like 10.0.0.1 in its tail
	} {
		r := httptest.NewRequest("GET", "http://mirror.example/", nil)
		r.RemoteAddr = tc.remote
		r.Header.Set("X-Forwarded-Host", "app.example.org")
		r.Header.Set("X-Forwarded-Proto", "https")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		got := w.Body.String()
		// X-Forwarded-Proto survives only from a trusted proxy.
		want := tc.want + map[bool]string{true: "https", false: ""}[strings.HasPrefix(tc.want, "app.")]
		if got != want {
			t.Errorf("from %s: handler saw %q, want %q", tc.remote, got, want)
		}
	}
}

func TestParseCIDRsRefusesGarbage(t *testing.T) {
	for _, s := range []string{"", "10.0.0.0/33", "example.org", "10.0.0.0/8/8"} {
		if _, err := ParseCIDRs([]string{s}); !errors.Is(err, ErrConfig) {
			t.Errorf("%q: err %v, want ErrConfig", s, err)
		}
	}
	got, err := ParseCIDRs([]string{"10.1.2.3/8", "::1"})
	if err != nil || got[0] != netip.MustParsePrefix("10.0.0.0/8") || got[1] != netip.MustParsePrefix("::1/128") {
		t.Fatalf("got %v %v", got, err)
	}
}

// Slow-loris: connections that trickle their headers are closed after
// ReadHeaderTimeout, and the server keeps answering everyone else.
func TestSlowLorisConnectionsAreClosed(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ReadHeaderTimeout = 200 * time.Millisecond
	_, addr := serve(t, cfg, newBlocker())
	const n = 200
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A request line and one header, never the blank line that ends
		// the headers.
		if _, err := io.WriteString(c, "GET /fast HTTP/1.1\r\nHost: x\r\nX-A: "); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	if code, _, body := get(t, clientFrom("127.0.0.2"), "http://"+addr+"/fast"); code != http.StatusOK || body != "ok" {
		t.Fatalf("honest request during the attack: %d %q", code, body)
	}
	deadline := time.Now().Add(guard)
	for i, c := range conns {
		c.SetReadDeadline(deadline)
		// The server may answer 408 before closing; read to the end.
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("slow-loris connection %d still open after %v: the server never timed out its headers", i, guard)
		}
	}
}

// A client that stops reading a long response loses its connection, and
// the handler (and its slot) is freed.
func TestStalledReaderIsCutOff(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WriteIdleTimeout = 200 * time.Millisecond
	chunk := make([]byte, 64<<10)
	endless := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// done closes once the edge's handler (and its slot release) returned.
	done := make(chan struct{})
	srv := e.Server(endless)
	inner := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(w, r)
		close(done)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
	// Read the status line, then stop reading.
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatalf("handler still writing to a stalled reader after %v", guard)
	}
	if n := e.InFlight(); n != 0 {
		t.Fatalf("%d slots still held", n)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	c := DefaultConfig()
	c.WriteIdleTimeout = 0
	if err := c.Validate(); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "WriteIdleTimeout") {
		t.Fatalf("err %v", err)
	}
}
