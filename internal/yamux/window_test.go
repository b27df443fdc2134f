package yamux

import (
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// budget is a MemoryManager with a limit shared by every stream of a
// session, like a libp2p peer scope: it records what each stream reserved.
type budget struct {
	mu       sync.Mutex
	limit    int
	reserved int
	refused  int
}

type span struct {
	b    *budget
	held int
}

var errNoMemory = errors.New("no memory")

func (b *budget) span() (MemoryManager, error) { return &span{b: b}, nil }

func (s *span) ReserveMemory(size int, _ uint8) error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	if s.b.reserved+size > s.b.limit {
		s.b.refused++
		return errNoMemory
	}
	s.b.reserved += size
	s.held += size
	return nil
}

func (s *span) ReleaseMemory(size int) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.reserved -= size
	s.held -= size
}

func (s *span) Done() { s.ReleaseMemory(s.held) }

func (s *span) holds() int {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.held
}

// bulkStream opens a stream from a client session to a server session
// (over net.Pipe) whose receive side reserves from b, and starts writing
// total bytes into it. The sessions' RTT is an hour, so every window update
// comes within two round trips of the previous one, as on a stream whose
// reader keeps up with a window-limited sender. It returns the server's
// stream and a channel that is closed when the write returned.
func bulkStream(t *testing.T, fast uint32, b *budget, total int) (*Stream, <-chan error) {
	t.Helper()
	a, c := net.Pipe()
	cfg := DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.EnableKeepAlive = false
	cfg.MaxStreamWindowSize = 16 << 20
	cfg.FastStreamWindowSize = fast
	cfg.MeasureRTTInterval = 24 * time.Hour // only the first ping, at the start
	client, err := Client(a, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	server, err := Server(c, cfg, b.span)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	for _, s := range []*Session{client, server} {
		// wait for the session's first ping, then make the path an
		// hour long (later pings come only after MeasureRTTInterval)
		guard := time.Now().Add(30 * time.Second)
		for s.RTT() == 0 {
			if time.Now().After(guard) {
				t.Fatal("no first ping in 30 s")
			}
			runtime.Gosched()
		}
		atomic.StoreInt64(&s.rtt, int64(time.Hour))
	}
	cs, err := client.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := cs.Write(make([]byte, total))
		done <- err
	}()
	ss, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	return ss, done
}

// readAtLeast reads n bytes or more from s.
func readAtLeast(t *testing.T, s *Stream, n int) {
	t.Helper()
	buf := make([]byte, 32<<10)
	for got := 0; got < n; {
		k, err := s.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += k
	}
}

// A stream whose reader takes half its window within two round trips jumps
// to FastStreamWindowSize at the first window update, with the growth
// reserved first, and the sender may then use it: 4 MiB more go out while
// nobody reads. Upstream's rule (FastStreamWindowSize 0) doubles the
// window to 512 KiB instead.
func TestWindowJumpsWhenTheReaderKeepsUp(t *testing.T) {
	for _, tc := range []struct {
		name string
		fast uint32
		want uint32
	}{
		{"fast window", 8 << 20, 8 << 20},
		{"upstream", 0, 512 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &budget{limit: 64 << 20}
			s, done := bulkStream(t, tc.fast, b, 5<<20)
			readAtLeast(t, s, initialStreamWindow/2+1)
			if s.recvWindow != tc.want {
				t.Fatalf("window after the first update: %d KiB, want %d KiB", s.recvWindow>>10, tc.want>>10)
			}
			if held := s.memorySpan.(*span).holds(); held != int(s.recvWindow) {
				t.Fatalf("the stream holds %d KiB of memory for a %d KiB window", held>>10, s.recvWindow>>10)
			}
			if tc.fast == 0 {
				return
			}
			// The sender has credit for the rest without another read
			// (a guard, not a wait: it returns as soon as the bytes are
			// buffered).
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("the sender is still blocked: the jump was not sent (buffered %d KiB)", s.recvBuf.Len()>>10)
			}
		})
	}
}

// The jump is refused when the memory manager says no: the window then
// grows as upstream's does (doubled, reserved), and never beyond what was
// reserved; with nothing left to reserve it stays at the initial window.
func TestWindowJumpRefusedByTheMemoryManager(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int
		want  uint32
	}{
		{"room to double only", 1 << 20, 512 << 10},
		{"no room to grow", initialStreamWindow, initialStreamWindow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &budget{limit: tc.limit}
			s, _ := bulkStream(t, 8<<20, b, 2<<20)
			readAtLeast(t, s, initialStreamWindow/2+1)
			if s.recvWindow != tc.want {
				t.Fatalf("window: %d KiB, want %d KiB", s.recvWindow>>10, tc.want>>10)
			}
			b.mu.Lock()
			refused := b.refused
			b.mu.Unlock()
			if refused == 0 {
				t.Fatal("the jump was never asked of the memory manager")
			}
			if held := s.memorySpan.(*span).holds(); held != int(s.recvWindow) {
				t.Fatalf("the stream holds %d KiB of memory for a %d KiB window", held>>10, s.recvWindow>>10)
			}
		})
	}
}

// A stream whose reader takes longer than two round trips (but less than
// four) for half a window doubles it, as upstream's does: only streams that
// keep up jump.
func TestWindowDoublesWhenTheReaderIsSlower(t *testing.T) {
	b := &budget{limit: 64 << 20}
	s, _ := bulkStream(t, 8<<20, b, 1<<20)
	readAtLeast(t, s, 1)
	// the last update was three round trips ago
	s.epochStart = time.Now().Add(-3 * time.Hour)
	readAtLeast(t, s, initialStreamWindow/2)
	if s.recvWindow != 512<<10 {
		t.Fatalf("window: %d KiB, want 512 KiB", s.recvWindow>>10)
	}
}

func TestVerifyConfigFastWindow(t *testing.T) {
	for _, fast := range []uint32{initialStreamWindow - 1, 32 << 20} {
		cfg := DefaultConfig()
		cfg.FastStreamWindowSize = fast
		cfg.MeasureRTTInterval = 24 * time.Hour // only the first ping, at the start
		if VerifyConfig(cfg) == nil {
			t.Errorf("FastStreamWindowSize %d accepted (initial %d, max %d)", fast, cfg.InitialStreamWindowSize, cfg.MaxStreamWindowSize)
		}
	}
}
