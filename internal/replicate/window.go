package replicate

import (
	"math"
	"time"
)

// window sizes the requests kept outstanding at one holder to the
// bandwidth-delay product of the path to it: enough bytes asked for that
// the link never idles while the next request travels, not so many that a
// slow holder sits on work a faster one could do. It is a pure value: the
// fetch loop feeds it what it observed, with the time passed in.
//
// Two quantities are measured:
//   - the delay: the round trip plus one block's transfer, without
//     queueing. The round trip comes from a probe outside the block
//     exchange (libp2p ping) when the holder answers one: a bitswap
//     server answers the requests of a window concurrently (a stream
//     each), so even the fastest delivery of a full window waits for the
//     whole window, and a delay taken from deliveries grows the window
//     that inflates it. Without a probe, the smallest time from asking for
//     a block to receiving it stands in.
//   - the rate: bytes delivered per second over intervals in which the
//     holder had requests outstanding the whole time (an EWMA).
//
// The window is twice their product plus two blocks (so the pipe stays
// full while a batch of requests is answered), clamped to [min, max]
// bytes. Before the first rate sample it is init bytes.
type window struct {
	min, max, init int64

	delay    time.Duration // smallest delivery time seen; 0 = none yet
	rtt      time.Duration // probed round trip; 0 = none
	rate     float64       // bytes/second; 0 = no sample yet
	avgBlock float64       // EWMA of block sizes

	// the rate is measured over spans of at least rateSpan
	spanStart time.Time
	spanBytes int64
	last      time.Time
}

// rateSpan is the shortest interval a rate sample covers: blocks arrive
// in bursts (the blocks of a window are sent concurrently and finish
// together; a process short of CPU reads several at once), so shorter spans
// measure the burst, not the link.
const rateSpan = 100 * time.Millisecond

// defaultBlock is the size assumed before any block arrived: bundles are
// mostly 1 MiB leaves (unixfs-v1-2025 chunks).
const defaultBlock = 1 << 20

func newWindow(min, max, init int64) window {
	return window{min: min, max: max, init: init, avgBlock: defaultBlock}
}

// delivered records a block of n bytes that arrived at now, lat after it
// was asked for. busy says whether the holder had other requests
// outstanding since the previous delivery (only then does the gap between
// deliveries measure the link and not our asking).
func (w *window) delivered(now time.Time, n int, lat time.Duration, busy bool) {
	if lat > 0 && (w.delay == 0 || lat < w.delay) {
		w.delay = lat
	}
	w.avgBlock += (float64(max(n, 1)) - w.avgBlock) / 8
	if !busy || w.last.IsZero() {
		w.spanStart, w.spanBytes = now, 0
		w.last = now
		return
	}
	w.spanBytes += int64(n)
	w.last = now
	if d := now.Sub(w.spanStart); d >= rateSpan {
		r := float64(w.spanBytes) / d.Seconds()
		if w.rate == 0 {
			w.rate = r
		} else {
			w.rate += (r - w.rate) / 4
		}
		w.spanStart, w.spanBytes = now, 0
	}
}

// probed records a round trip measured outside the block exchange; the
// smallest one counts.
func (w *window) probed(rtt time.Duration) {
	if rtt > 0 && (w.rtt == 0 || rtt < w.rtt) {
		w.rtt = rtt
	}
}

// pathDelay is the round trip plus one block's transfer: from the probe
// where there is one, else the smallest delivery time.
func (w *window) pathDelay() time.Duration {
	if w.rtt > 0 && w.rate > 0 {
		return w.rtt + time.Duration(w.avgBlock/w.rate*float64(time.Second))
	}
	return w.delay
}

// idle records that the holder has nothing outstanding: the next span
// starts with the next delivery.
func (w *window) idle() { w.last = time.Time{} }

// bytes is the window in bytes.
func (w *window) bytes() int64 {
	d := w.pathDelay()
	if w.rate == 0 || d == 0 {
		return w.init
	}
	bdp := w.rate * d.Seconds()
	b := 2*bdp + 2*w.avgBlock
	if b > float64(w.max) {
		return w.max
	}
	return max(int64(b), w.min)
}

// blocks is the window in requests: bytes over the average block size, at
// least 2 and at most maxWantsPerHolder.
func (w *window) blocks() int {
	n := math.Ceil(float64(w.bytes()) / max(w.avgBlock, 1))
	return int(min(max(n, 2), maxWantsPerHolder))
}

// maxWantsPerHolder bounds the requests outstanding at one holder however
// small its blocks: boxo's server keeps at most 1024 wants per peer, a
// mirror's 4096 (bitswapserve.Config.MaxWantsPerPeer).
const maxWantsPerHolder = 512
