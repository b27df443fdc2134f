// Package badge renders availability badges: a flat, shields.io-style SVG
// and the shields.io endpoint JSON (https://shields.io/badges/endpoint-badge)
// for two facts backed by probe evidence:
//
//   - "mirrors" of a bundle: how many mirrors are verified to serve it, in
//     how many independent failure domains ([Mirrors]);
//   - "backup server" for a mirror: its verdict and 24-hour pass rate
//     ([Backup]).
//
// It is a pure core: no I/O, no clock. The HTTP handler lives in
// internal/badge/badgehttp.
package badge

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"math"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/mirrornet/mirrornet/internal/probe"
)

// Badge is one label/message pair and its colour (a shields.io colour name).
type Badge struct {
	Label   string
	Message string
	Color   string
}

// Colours: shields.io names and the hex values its flat style draws.
var colors = map[string]string{
	"brightgreen": "#4c1", "green": "#97ca00", "yellowgreen": "#a4a61d", "yellow": "#dfb317",
	"orange": "#fe7d37", "red": "#e05d44", "lightgrey": "#9f9f9f", "blue": "#007ec6",
}

// Mirrors is the badge of a bundle: "5 verified · 4 domains". Colour
// follows independent copies: red for none, yellow for one domain,
// yellowgreen for two, brightgreen for three or more.
func Mirrors(verified, domains int) Badge {
	b := Badge{Label: "mirrors", Message: fmt.Sprintf("%d verified · %d %s", verified, domains, plural(domains, "domain", "domains"))}
	switch {
	case verified == 0 || domains == 0:
		b.Color = "red"
	case domains == 1:
		b.Color = "yellow"
	case domains == 2:
		b.Color = "yellowgreen"
	default:
		b.Color = "brightgreen"
	}
	return b
}

// Unknown is the badge for a subject nothing is known about.
func Unknown(label string) Badge {
	return Badge{Label: label, Message: "unknown", Color: "lightgrey"}
}

// Backup is the badge of a mirror: "verified · 99.8% 24 h". The rate is
// rounded down, so a badge never claims more than was measured.
func Backup(st probe.TargetStatus) Badge {
	b := Badge{Label: "backup server", Message: string(st.State)}
	if st.Samples24h > 0 {
		b.Message += " · " + percent(st.PassRate24h) + " 24 h"
	}
	switch st.State {
	case probe.StateVerified:
		b.Color = "brightgreen"
		if st.Samples24h > 0 && st.PassRate24h < 0.99 {
			b.Color = "green"
		}
	case probe.StateDegraded:
		b.Color = "orange"
	case probe.StateFailing:
		b.Color = "red"
	default:
		b.Color = "lightgrey"
	}
	return b
}

func percent(r float64) string {
	p := math.Floor(max(0, min(r, 1))*1000) / 10
	if p == math.Trunc(p) {
		return fmt.Sprintf("%.0f%%", p)
	}
	return fmt.Sprintf("%.1f%%", p)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// endpoint is the shields.io endpoint schema.
type endpoint struct {
	SchemaVersion int    `json:"schemaVersion"`
	Label         string `json:"label"`
	Message       string `json:"message"`
	Color         string `json:"color"`
}

// JSON returns the shields.io endpoint JSON for b.
func (b Badge) JSON() []byte {
	out, _ := json.Marshal(endpoint{SchemaVersion: 1, Label: b.Label, Message: b.Message, Color: b.Color})
	return out
}

// charWidth is the fixed per-character width estimate (Verdana 11 px
// averages about 7 px); padding is the space around each text.
const (
	charWidth = 7
	padding   = 10
)

func textWidth(s string) int { return utf8.RuneCountInString(s)*charWidth + padding }

func esc(s string) string {
	var buf bytes.Buffer
	xml.EscapeText(&buf, []byte(s))
	return buf.String()
}

// SVG returns b drawn in shields.io's flat style.
func (b Badge) SVG() []byte {
	lw, mw := textWidth(b.Label), textWidth(b.Message)
	w := lw + mw
	fill, ok := colors[b.Color]
	if !ok {
		fill = colors["lightgrey"]
	}
	label, msg := esc(b.Label), esc(b.Message)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="20" role="img" aria-label="%s: %s">`, w, label, msg)
	fmt.Fprintf(&buf, `<title>%s: %s</title>`, label, msg)
	buf.WriteString(`<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>`)
	fmt.Fprintf(&buf, `<clipPath id="r"><rect width="%d" height="20" rx="3" fill="#fff"/></clipPath>`, w)
	fmt.Fprintf(&buf, `<g clip-path="url(#r)"><rect width="%d" height="20" fill="#555"/><rect x="%d" width="%d" height="20" fill="%s"/><rect width="%d" height="20" fill="url(#s)"/></g>`, lw, lw, mw, fill, w)
	buf.WriteString(`<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">`)
	for _, t := range []struct {
		x    int
		text string
	}{{lw / 2, label}, {lw + mw/2, msg}} {
		fmt.Fprintf(&buf, `<text x="%d" y="15" fill="#010101" fill-opacity=".3">%s</text><text x="%d" y="14">%s</text>`, t.x, t.text, t.x, t.text)
	}
	buf.WriteString(`</g></svg>`)
	return buf.Bytes()
}

// Fund is the badge of an app's fund: "100 STX/epoch · 7 mirrors paid"
// (paid < 0: no ledger computed yet).
func Fund(budget uint64, unit string, paid int) Badge {
	b := Badge{Label: "fund", Message: fmt.Sprintf("%d %s/epoch", budget, unit), Color: "blue"}
	if paid >= 0 {
		b.Message += fmt.Sprintf(" · %d %s paid", paid, plural(paid, "mirror", "mirrors"))
	}
	return b
}

// Earned is the badge of what a mirror earns in the latest epoch of every
// fund: "12 STX · 3 USD", units sorted.
func Earned(byUnit map[string]uint64) Badge {
	units := make([]string, 0, len(byUnit))
	for u := range byUnit {
		units = append(units, u)
	}
	sort.Strings(units)
	var parts []string
	for _, u := range units {
		parts = append(parts, fmt.Sprintf("%d %s", byUnit[u], u))
	}
	return Badge{Label: "earned", Message: strings.Join(parts, " · "), Color: "brightgreen"}
}
