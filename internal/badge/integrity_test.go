package badge

import (
	"strings"
	"testing"
)

func TestIntegrity(t *testing.T) {
	for _, tc := range []struct {
		state    string
		builders int
		msg      string
		color    string
	}{
		{"verified", 3, "verified · 3 builders", "brightgreen"},
		{"verified", 1, "verified · 1 builder", "green"},
		{"diverges", 2, "diverges", "red"},
		{"unverified", 0, "unverified", "lightgrey"},
		{"", 0, "unverified", "lightgrey"},
	} {
		b := Integrity(tc.state, tc.builders)
		if b.Label != "integrity" || b.Message != tc.msg || b.Color != tc.color {
			t.Errorf("Integrity(%q, %d) = %+v, want %q %q", tc.state, tc.builders, b, tc.msg, tc.color)
		}
		if !strings.Contains(string(b.JSON()), `"message":"`+tc.msg+`"`) || !strings.Contains(string(b.SVG()), tc.msg) {
			t.Errorf("%q: JSON or SVG lacks the message", tc.msg)
		}
	}
}
