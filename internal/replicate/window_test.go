package replicate

import (
	"testing"
	"time"
)

// feed delivers n blocks of size bytes to w, one every gap, each lat after
// it was asked for, the holder busy throughout.
func feed(w *window, start time.Time, n, size int, gap, lat time.Duration) time.Time {
	at := start
	for range n {
		at = at.Add(gap)
		w.delivered(at, size, lat, true)
	}
	return at
}

func TestWindowFollowsBandwidthDelayProduct(t *testing.T) {
	const mib = 1 << 20
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name      string
		size      int
		gap, lat  time.Duration
		wantBytes int64 // within 10%
	}{
		// 300 Mbit/s (37.5 MB/s): a 1 MiB block every 28 ms; 20 ms each
		// way plus a block's transfer: delay 68 ms; BDP 2.55 MB; window
		// 2*BDP + 2 blocks = 7.2 MB, under the 8 MiB floor
		{"300 Mbit/s, 20 ms", mib, 27962 * time.Microsecond, 68 * time.Millisecond, 8 * mib},
		// 1 Gbit/s at 100 ms: 125 MB/s * 108 ms = 13.5 MB; window 29 MB
		{"1 Gbit/s, 50 ms", mib, 8389 * time.Microsecond, 108 * time.Millisecond, 2*125e6*108/1000 + 2*mib},
		// a long fat path hits the ceiling
		{"10 Gbit/s, 200 ms", mib, 839 * time.Microsecond, 400 * time.Millisecond, 64 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWindow(8*mib, 64*mib, 8*mib)
			if got := w.bytes(); got != 8*mib {
				t.Fatalf("before any delivery: %d bytes, want the initial %d", got, 8*mib)
			}
			feed(&w, t0, 200, tc.size, tc.gap, tc.lat)
			got := w.bytes()
			if d := float64(got-tc.wantBytes) / float64(tc.wantBytes); d > 0.1 || d < -0.1 {
				t.Fatalf("window %d bytes, want about %d (rate %.0f B/s, delay %s)", got, tc.wantBytes, w.rate, w.delay)
			}
			if b := w.blocks(); int64(b) != (got+int64(tc.size)-1)/int64(tc.size) {
				t.Fatalf("window %d blocks for %d bytes of %d-byte blocks", b, got, tc.size)
			}
		})
	}
}

func TestWindowDelayIsTheSmallestSeen(t *testing.T) {
	w := newWindow(1<<20, 64<<20, 1<<20)
	t0 := time.Unix(1000, 0)
	// queueing behind a full window makes later requests slower; the
	// path's delay is the fastest answer
	at := feed(&w, t0, 10, 1<<20, 10*time.Millisecond, 30*time.Millisecond)
	feed(&w, at, 50, 1<<20, 10*time.Millisecond, 300*time.Millisecond)
	if w.delay != 30*time.Millisecond {
		t.Fatalf("delay %s, want the smallest seen (30ms)", w.delay)
	}
}

func TestWindowIgnoresIdleGaps(t *testing.T) {
	w := newWindow(1<<20, 64<<20, 1<<20)
	t0 := time.Unix(1000, 0)
	at := feed(&w, t0, 50, 1<<20, 10*time.Millisecond, 20*time.Millisecond)
	rate := w.rate
	// the holder had nothing to do for a second (the fetch had nothing
	// to ask): that gap is not the link's speed
	w.idle()
	at = at.Add(time.Second)
	w.delivered(at, 1<<20, 20*time.Millisecond, false)
	feed(&w, at, 50, 1<<20, 10*time.Millisecond, 20*time.Millisecond)
	if w.rate < rate*0.9 {
		t.Fatalf("rate fell from %.0f to %.0f after an idle second", rate, w.rate)
	}
}

func TestWindowSmallBlocksCapped(t *testing.T) {
	w := newWindow(8<<20, 64<<20, 8<<20)
	feed(&w, time.Unix(1000, 0), 500, 1000, 100*time.Microsecond, 5*time.Millisecond)
	if b := w.blocks(); b != maxWantsPerHolder {
		t.Fatalf("%d requests of 1 kB blocks outstanding, want the cap %d", b, maxWantsPerHolder)
	}
}

// A bitswap server answers a window's requests concurrently, so every
// delivery of a full window waits for the whole window: the delay taken
// from deliveries grows with the window it sizes. A probed round trip
// keeps the window at the path's bandwidth-delay product.
func TestWindowUsesProbedRoundTrip(t *testing.T) {
	const mib = 1 << 20
	t0 := time.Unix(1000, 0)
	// 300 Mbit/s: a 1 MiB block every 28 ms, each answered 400 ms after
	// it was asked (16 blocks outstanding, served side by side)
	gap, lat := 27962*time.Microsecond, 400*time.Millisecond
	inflated := newWindow(8*mib, 64*mib, 8*mib)
	feed(&inflated, t0, 200, mib, gap, lat)
	probed := newWindow(8*mib, 64*mib, 8*mib)
	probed.probed(45 * time.Millisecond)
	probed.probed(40 * time.Millisecond) // the smallest probe counts
	probed.probed(60 * time.Millisecond)
	feed(&probed, t0, 200, mib, gap, lat)
	if got := inflated.bytes(); got < 28*mib {
		t.Fatalf("without a probe the window is %d bytes, want the inflated 2 x 37.5 MB/s x 400 ms (check the test)", got)
	}
	// 2 x 37.5 MB/s x (40 ms + 28 ms) + 2 blocks = 7.2 MB: the floor
	if got := probed.bytes(); got != 8*mib {
		t.Fatalf("with a 40 ms probe the window is %d bytes (delay %s), want the 8 MiB floor", got, probed.pathDelay())
	}
	if d := probed.pathDelay(); d < 66*time.Millisecond || d > 70*time.Millisecond {
		t.Fatalf("path delay %s, want the probe plus one block's transfer (68 ms)", d)
	}
}
