package adversary_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"

	importer "github.com/mirrornet/mirrornet/internal/bundle"
	"github.com/mirrornet/mirrornet/internal/gateway"
	"github.com/mirrornet/mirrornet/internal/httpedge"
	"github.com/mirrornet/mirrornet/internal/store"
	"github.com/mirrornet/mirrornet/internal/store/ipfsbs"
)

// publicSide is a mirror's public HTTP stack (gateway behind the hardened
// edge, the node's defaults) serving one held 8 MiB bundle on loopback.
func publicSide(t *testing.T, limits httpedge.Config) (addr, root string, edge *httpedge.Edge) {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dir := t.TempDir()
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i * 31 % 253)
	}
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("<!doctype html><title>app</title>"), 0o644)
	os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644)
	res, err := importer.Import(context.Background(), dir, func(b blocks.Block) error { return st.Put(b.Cid(), b.RawData()) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.MarkHeld(res.Root); err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.DefaultConfig(), ipfsbs.New(st), st.Held, gateway.WithHeldBlock(st.HeldBlock))
	if err != nil {
		t.Fatal(err)
	}
	edge, err = httpedge.New(limits)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := edge.Server(gw.Handler(nil))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), res.Root.String(), edge
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// dialFrom opens a TCP connection to addr from loopback address src.
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return d.Dial("tcp", addr)
}

// 1,000 CAR readers that never read, and 300 slow-loris connections, all
// from one address: the mirror serves at most MaxPerClient of them at once,
// answers the rest 503 with Retry-After at once, its heap stays bounded,
// and an honest client on another address gets the whole bundle.
func TestCARFloodAndSlowLoris(t *testing.T) {
	// The node's defaults: slow-loris connections go after 10 s.
	limits := httpedge.DefaultConfig()
	addr, root, edge := publicSide(t, limits)
	base := heapInUse()

	const readers, loris = 1000, 300
	var (
		mu     sync.Mutex
		status = map[string]int{}
		conns  []net.Conn
		wg     sync.WaitGroup
	)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	sem := make(chan struct{}, 100) // dial 100 at a time: the listen backlog is finite
	for range readers {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dialFrom("127.0.0.1", addr)
			if err != nil {
				mu.Lock()
				status["dial error"]++
				mu.Unlock()
				return
			}
			io.WriteString(c, "GET /ipfs/"+root+"?format=car HTTP/1.1\r\nHost: "+addr+"\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(2 * time.Minute)) // failure guard
			line, err := bufio.NewReaderSize(c, 64).ReadString('\n')
			mu.Lock()
			defer mu.Unlock()
			conns = append(conns, c)
			if err != nil {
				status["read error: "+err.Error()]++
				return
			}
			status[strings.TrimSpace(line)]++ // then never read again
		}()
	}
	// The slow-loris connections are kept apart: the readers' goroutines
	// append to conns while this loop runs, so the tail of conns is not
	// theirs alone.
	var slow []net.Conn
	for range loris {
		c, err := dialFrom("127.0.0.3", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /ipfs/"+root+"?format=car HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		slow = append(slow, c)
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	wg.Wait()
	t.Logf("attackers' status lines: %v; in flight %d", status, edge.InFlight())
	if ok, busy := status["HTTP/1.1 200 OK"], status["HTTP/1.1 503 Service Unavailable"]; ok > limits.MaxPerClient || ok+busy != readers {
		t.Fatalf("%d streams served and %d refused of %d, want at most %d served and the rest 503", ok, busy, readers, limits.MaxPerClient)
	}
	if n := edge.InFlight(); n > limits.MaxPerClient {
		t.Fatalf("%d requests in flight, cap per client %d", n, limits.MaxPerClient)
	}
	// Each stalled stream holds the block it is writing (up to 1 MiB), and
	// all streams together at most gateway.ReadAheadBudget blocks read
	// ahead; 48 MiB for everything else (the race detector's own allocations among them).
	bound := int64(limits.MaxPerClient+gateway.ReadAheadBudget+48) << 20
	grown := int64(heapInUse()) - int64(base)
	t.Logf("heap grew by %.1f MiB under the attack (bound %d MiB)", float64(grown)/(1<<20), bound>>20)
	if grown > bound {
		t.Fatalf("heap grew by %d MiB under the attack, bound %d MiB", grown>>20, bound>>20)
	}

	// An honest client elsewhere is served in full meanwhile.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, a string) (net.Conn, error) {
		return dialFrom("127.0.0.2", a)
	}}}
	resp, err := hc.Get("http://" + addr + "/ipfs/" + root + "?format=car")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || n < 8<<20 {
		t.Fatalf("honest CAR: %d, %d bytes, %v", resp.StatusCode, n, err)
	}

	// The slow-loris connections are closed by the server.
	for _, c := range slow {
		c.SetReadDeadline(time.Now().Add(2 * time.Minute)) // failure guard
		if _, err := io.Copy(io.Discard, c); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("a slow-loris connection is still open")
			}
		}
	}
}
