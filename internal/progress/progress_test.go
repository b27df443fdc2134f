package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestDisabledDrawsNothing(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, false, "publishing", 100)
	b.SetTotal(200)
	b.Set(50)
	b.Finish()
	var nilBar *Bar
	nilBar.Set(1)
	nilBar.Finish()
	if buf.Len() != 0 {
		t.Errorf("a disabled bar wrote %q", buf.String())
	}
}

func TestBarShowsTotalPercentRate(t *testing.T) {
	throttle = 0
	defer func() { throttle = 100 * time.Millisecond }()
	var buf bytes.Buffer
	b := New(&buf, true, "publishing", 4<<20)
	b.Set(1 << 20)
	b.Set(2 << 20)
	out := buf.String()
	for _, want := range []string{"publishing", "50%", "4.2 MB", "/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("bar lacks %q: %q", want, out)
		}
	}
	// Unknown total first, then known.
	buf.Reset()
	b = New(&buf, true, "getting", 0)
	b.Set(1 << 20)
	b.SetTotal(2 << 20)
	b.Set(2 << 20)
	if out := buf.String(); !strings.Contains(out, "getting  50%") || !strings.Contains(out, "1.0/2.1 MB") {
		t.Errorf("bar after SetTotal: %q", out)
	}
}

// The last state is drawn however fast the work went (the throttle never
// hides 100%), and work that stops short is never drawn as complete.
func TestFinalStateDrawnUnthrottled(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, true, "getting", 4<<20)
	b.Set(1 << 20) // the first draw
	b.Set(4 << 20) // within the throttle, but the end
	b.Finish()
	if out := buf.String(); !strings.Contains(out, "getting 100%") || !strings.Contains(out, "4.2/4.2 MB") || !strings.HasSuffix(out, "\x1b[2K\r") {
		t.Errorf("finished bar: %q", out)
	}
	buf.Reset()
	b = New(&buf, true, "getting", 4<<20)
	b.Set(1 << 20)
	b.Finish() // an error midway
	if out := buf.String(); strings.Contains(out, "100%") {
		t.Errorf("a bar stopped at 25%% drew %q", out)
	}
}
