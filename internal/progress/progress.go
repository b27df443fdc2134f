// Package progress draws the progress of long work (publish, get, follow
// --wait) on a terminal: done and total bytes, percentage, rate and ETA,
// through schollz/progressbar. It draws nothing when the output is not a
// terminal or the caller asked for machine output (--json): then a Bar
// is a no-op, so callers need no conditionals.
package progress

import (
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// throttle bounds redraws: ten a second is smooth and cheap.
var throttle = 100 * time.Millisecond

// Bar is one progress line. The zero value and a nil *Bar are no-ops.
type Bar struct {
	bar   *progressbar.ProgressBar
	w     io.Writer
	desc  string
	total int64
	done  int64
}

// New returns a bar drawing on w when enabled, else a no-op bar. total is
// in bytes; 0 or less means not known yet (a spinner with bytes and rate
// until SetTotal).
func New(w io.Writer, enabled bool, desc string, total int64) *Bar {
	if !enabled {
		return &Bar{}
	}
	return &Bar{total: total, w: w, desc: desc, bar: newBar(w, desc, total)}
}

func newBar(w io.Writer, desc string, total int64) *progressbar.ProgressBar {
	max := total
	if max <= 0 {
		max = -1 // a spinner
	}
	return progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(false),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(throttle),
		progressbar.OptionShowCount(),
		// Not OptionClearOnFinish: the bar draws its last state (100%,
		// the total, the rate) when done reaches the total, unthrottled,
		// and Finish then clears the line.
		progressbar.OptionSpinnerType(14),
		// No spinner goroutine: the bar redraws only when Set is called.
		progressbar.OptionSetSpinnerChangeInterval(0),
		progressbar.OptionUseANSICodes(true),
	)
}

// Enabled reports whether the bar draws.
func (b *Bar) Enabled() bool { return b != nil && b.bar != nil }

// SetTotal sets the total once it is known.
func (b *Bar) SetTotal(total int64) {
	if !b.Enabled() || total <= 0 || total == b.total {
		return
	}
	// A spinner becomes a bar: start a bar in its place.
	_ = b.bar.Clear()
	b.total = total
	b.bar = newBar(b.w, b.desc, total)
	b.Set(b.done)
}

// Set moves the bar to done bytes.
func (b *Bar) Set(done int64) {
	if !b.Enabled() {
		return
	}
	b.done = done
	if b.total > 0 && done > b.total {
		done = b.total
	}
	_ = b.bar.Set64(done)
}

// Finish clears the line. Work that stopped short of its total (an error,
// Ctrl-C) is not shown as complete on the way.
func (b *Bar) Finish() {
	if !b.Enabled() {
		return
	}
	_ = b.bar.Clear()
}
