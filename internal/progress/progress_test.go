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
