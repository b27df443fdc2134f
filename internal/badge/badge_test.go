package badge

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/mirrornet/mirrornet/internal/probe"
)

// parseSVG checks that b is well-formed XML and returns its text content.
func parseSVG(t *testing.T, b []byte) string {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	var text strings.Builder
	root := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not valid XML: %v\n%s", err, b)
		}
		switch v := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = v.Name.Local
			}
		case xml.CharData:
			text.Write(v)
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q", root)
	}
	return text.String()
}

func checkJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if m["schemaVersion"] != float64(1) || m["label"] == "" || m["message"] == "" || m["color"] == "" || len(m) != 4 {
		t.Fatalf("endpoint schema: %s", b)
	}
	return m
}

func TestMirrors(t *testing.T) {
	b := Mirrors(5, 4)
	if b.Message != "5 verified · 4 domains" || b.Color != "brightgreen" {
		t.Errorf("%+v", b)
	}
	if txt := parseSVG(t, b.SVG()); !strings.Contains(txt, "5 verified · 4 domains") || !strings.Contains(txt, "mirrors") {
		t.Errorf("SVG text %q", txt)
	}
	m := checkJSON(t, b.JSON())
	if m["message"] != "5 verified · 4 domains" {
		t.Errorf("json %v", m)
	}
	if one := Mirrors(16, 1); one.Message != "16 verified · 1 domain" || one.Color != "yellow" {
		t.Errorf("%+v", one)
	}
	if none := Mirrors(0, 0); none.Color != "red" {
		t.Errorf("%+v", none)
	}
	// The badge follows the evidence.
	if bytes.Equal(Mirrors(5, 4).SVG(), Mirrors(5, 3).SVG()) || bytes.Equal(Mirrors(5, 4).JSON(), Mirrors(4, 4).JSON()) {
		t.Error("badge does not change with the evidence")
	}
}

func TestBackup(t *testing.T) {
	v := probe.TargetStatus{State: probe.StateVerified, PassRate24h: 0.99849, Samples24h: 2000}
	b := Backup(v)
	if b.Message != "verified · 99.8% 24 h" || b.Color != "brightgreen" {
		t.Errorf("%+v", b)
	}
	parseSVG(t, b.SVG())
	checkJSON(t, b.JSON())
	d := v
	d.State, d.PassRate24h = probe.StateDegraded, 0.5
	if got := Backup(d); got.Message != "degraded · 50% 24 h" || got.Color != "orange" || bytes.Equal(got.SVG(), b.SVG()) {
		t.Errorf("%+v", got)
	}
	if got := Backup(probe.TargetStatus{State: probe.StateUnverified}); got.Message != "unverified" || got.Color != "lightgrey" {
		t.Errorf("%+v", got)
	}
	if got := Backup(probe.TargetStatus{State: probe.StateVerified, PassRate24h: 0.99999, Samples24h: 1}); got.Message != "verified · 99.9% 24 h" {
		t.Errorf("rate must round down: %+v", got)
	}
}

func TestEscaping(t *testing.T) {
	b := Badge{Label: `<script>&"'`, Message: "a]]>b</text>", Color: "no-such-colour"}
	txt := parseSVG(t, b.SVG())
	if !strings.Contains(txt, `<script>&"'`) || !strings.Contains(txt, "a]]>b</text>") {
		t.Errorf("text not preserved through escaping: %q", txt)
	}
	if strings.Contains(string(b.SVG()), "<script>") {
		t.Error("unescaped markup in SVG")
	}
	// Width grows with the text.
	if len(Badge{Label: "x", Message: "y"}.SVG()) == 0 || textWidth("abcdef") <= textWidth("abc") {
		t.Error("width estimate")
	}
}

func FuzzSVG(f *testing.F) {
	f.Add("mirrors", "5 verified · 4 domains")
	f.Fuzz(func(t *testing.T, label, msg string) {
		if !utf8Valid(label) || !utf8Valid(msg) {
			return
		}
		parseSVG(t, Badge{Label: label, Message: msg, Color: "red"}.SVG())
	})
}

func utf8Valid(s string) bool {
	for _, r := range s {
		if r == '\uFFFD' || (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0xFFFE || r == 0xFFFF {
			return false
		}
	}
	return true
}
