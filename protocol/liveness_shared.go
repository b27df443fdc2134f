package protocol

import (
	"encoding/json"
	"strconv"
	"sync"
	"unsafe"
)

// DecodeLivenessShared is [DecodeLiveness] for a receiver that keeps data
// for as long as the result: the decoded strings share data's memory
// instead of copying it, so a kept statement costs its bytes once, not
// twice. data must never be modified afterwards (attest passes the payload
// inside the signed envelope a Statement owns).
//
// It accepts and refuses exactly what DecodeLiveness does: a canonical
// payload is read by a small parser of the canonical layout, checked by
// re-encoding it, and anything else is handed to DecodeLiveness, whose
// errors then say what was wrong.
func DecodeLivenessShared(data []byte) (*Liveness, error) {
	if l, ok := parseLivenessShared(data); ok && l.Validate() == nil && isCanonical(l, data) {
		return l, nil
	}
	return DecodeLiveness(data)
}

// Footprint is the memory l takes beyond buf when l was decoded from
// (a slice of) buf by DecodeLivenessShared: the struct, the slices'
// string headers, and the bytes of strings that are not in buf (those
// with escapes; all of them for a Liveness decoded by DecodeLiveness).
func (l *Liveness) Footprint(buf []byte) int64 {
	const header = int64(unsafe.Sizeof("")) // a string header
	n := int64(unsafe.Sizeof(*l))
	own := func(s string) int64 {
		if len(s) == 0 || len(buf) == 0 {
			return int64(len(s))
		}
		p, lo := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
		if p >= lo && p+uintptr(len(s)) <= lo+uintptr(len(buf)) {
			return 0
		}
		return int64(len(s))
	}
	for _, s := range []string{l.Peer, l.State, l.HTTP, l.Version, l.Region, l.Holdings} {
		n += own(s)
	}
	for _, ss := range [][]string{l.Addrs, l.Bundles, l.Apps} {
		n += header * int64(cap(ss))
		for _, s := range ss {
			n += own(s)
		}
	}
	return n
}

// parseLivenessShared reads the canonical layout of a Liveness (fields in
// struct order, no spaces, optional fields last) and reports false on
// anything else. Strings without escapes alias data.
func parseLivenessShared(data []byte) (*Liveness, bool) {
	p := sharedParser{d: data, ok: true}
	l := &Liveness{}
	p.lit(`{"peer":`)
	l.Peer = p.str()
	p.lit(`,"state":`)
	l.State = p.str()
	p.lit(`,"seq":`)
	l.Seq = p.uint()
	p.lit(`,"time":`)
	l.Time = int64(p.uint())
	p.lit(`,"addrs":`)
	l.Addrs = p.list()
	p.lit(`,"http":`)
	l.HTTP = p.str()
	if p.opt(`,"bundles":`) {
		l.Bundles = p.list()
	}
	p.lit(`,"version":`)
	l.Version = p.str()
	if p.opt(`,"region":`) {
		l.Region = p.str()
	}
	if p.opt(`,"apps":`) {
		l.Apps = p.list()
	}
	if p.opt(`,"ttl":`) {
		l.TTL = int64(p.uint())
	}
	if p.opt(`,"holdings":`) {
		l.Holdings = p.str()
	}
	if p.opt(`,"holdings_count":`) {
		l.HoldingsCount = int(min(p.uint(), 1<<31))
	}
	p.lit(`}`)
	if !p.ok || p.i != len(p.d) || l.Time < 0 || l.TTL < 0 {
		return nil, false
	}
	return l, true
}

// sharedParser is a cursor over canonical JSON; ok turns false at the
// first thing it does not expect, and every later call is a no-op.
type sharedParser struct {
	d  []byte
	i  int
	ok bool
}

func (p *sharedParser) opt(s string) bool {
	if !p.ok || len(p.d)-p.i < len(s) || string(p.d[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

func (p *sharedParser) lit(s string) {
	if p.ok && !p.opt(s) {
		p.ok = false
	}
}

// str reads a string. Without escapes it aliases p.d; with them it is
// decoded (a copy, never longer than its encoding).
func (p *sharedParser) str() string {
	if !p.ok || p.i >= len(p.d) || p.d[p.i] != '"' {
		p.ok = false
		return ""
	}
	start, escaped := p.i+1, false
	for j := start; j < len(p.d); j++ {
		switch c := p.d[j]; {
		case c == '"':
			p.i = j + 1
			switch {
			case j == start:
				return ""
			case !escaped:
				return unsafe.String(&p.d[start], j-start)
			}
			var s string
			if json.Unmarshal(p.d[start-1:j+1], &s) != nil {
				p.ok = false
			}
			return s
		case c == '\\':
			escaped = true
			j++ // the escaped byte cannot end the string
		case c < 0x20:
			p.ok = false
			return ""
		}
	}
	p.ok = false
	return ""
}

// uint reads a non-negative integer without leading zeros.
func (p *sharedParser) uint() uint64 {
	if !p.ok {
		return 0
	}
	j := p.i
	for j < len(p.d) && p.d[j] >= '0' && p.d[j] <= '9' {
		j++
	}
	if j == p.i || (p.d[p.i] == '0' && j > p.i+1) {
		p.ok = false
		return 0
	}
	v, err := strconv.ParseUint(unsafe.String(&p.d[p.i], j-p.i), 10, 64)
	if err != nil {
		p.ok = false
		return 0
	}
	p.i = j
	return v
}

// scratch lists are reused by list; the result is copied out at its
// exact length, so a kept statement holds no spare capacity.
var scratchLists = sync.Pool{New: func() any { s := make([]string, 0, 64); return &s }}

// list reads an array of strings ([] gives an empty, non-nil slice).
func (p *sharedParser) list() []string {
	p.lit(`[`)
	if p.opt(`]`) {
		return []string{}
	}
	sp := scratchLists.Get().(*[]string)
	out := (*sp)[:0]
	for p.ok {
		out = append(out, p.str())
		if p.opt(`]`) {
			break
		}
		p.lit(`,`)
	}
	res := make([]string, len(out))
	copy(res, out)
	clear(out)
	if cap(out) <= 4*MaxBundles {
		*sp = out[:0]
		scratchLists.Put(sp)
	}
	return res
}
