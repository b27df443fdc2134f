package probe

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"hash"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Draw draws the committees of many targets in one epoch over one alive
// set, as [Committee] would draw each of them, for a ledger that judges a
// thousand targets a round: the alive set's domains are placed once, and a
// target's scores share the SHA-256 state of their common prefix (domain
// separator, epoch, target), so each costs one block instead of two, with
// no map and no sort per target. The last block is padded here, once per
// observer, and fed to the hash as whole blocks: the score is then the
// hash's state, read through its binary marshaling (checked against
// sha256.Sum256 once per process; a mismatch falls back to Sum).
//
// A Draw is not safe for concurrent use: use one per goroutine.
type Draw struct {
	epoch uint64
	n     int
	alive []peer.ID
	// suffix[i] is uvarint(len(alive[i])) || alive[i], the part of a score
	// that names the observer.
	suffix [][]byte
	dom    []int // domain index of alive[i]
	names  []string

	h   hash.Hash
	pre []byte
	buf []byte
	// tails[L][i] is suffix[i], SHA-256 padded for a message of prefix
	// length L (usually one L: every target ID has the same length).
	tails map[int][][]byte
	best  []drawn // per domain index; valid when gen matches
	gen   []uint32
	round uint32
	top   []drawn
}

type drawn struct {
	i int // index in alive
	s [32]byte
}

// NewDraw prepares the committees of epoch over alive, with domainOf
// placing a peer ("" is [DomainUnknown]) and n seats, as [Committee] takes
// them.
func NewDraw(epoch uint64, alive []peer.ID, domainOf func(peer.ID) string, n int) *Draw {
	d := &Draw{epoch: epoch, n: max(n, 0), alive: alive, suffix: make([][]byte, len(alive)), dom: make([]int, len(alive)), h: sha256.New(), tails: map[int][][]byte{}}
	index := map[string]int{}
	for i, p := range alive {
		name := domainOf(p)
		if name == "" {
			name = DomainUnknown
		}
		x, ok := index[name]
		if !ok {
			x = len(d.names)
			index[name] = x
			d.names = append(d.names, name)
		}
		d.dom[i] = x
		s := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(p)), uint64(len(p)))
		d.suffix[i] = append(s, p...)
	}
	d.best = make([]drawn, len(d.names))
	d.gen = make([]uint32, len(d.names))
	return d
}

// Committee returns target's committee: what [Committee] returns for the
// Draw's epoch, alive set, domains and n.
func (d *Draw) Committee(target peer.ID) []Seat {
	d.round++
	if d.round == 0 { // wrapped: forget every generation
		clear(d.gen)
		d.round = 1
	}
	b := append(d.pre[:0], assignDomain...)
	b = binary.BigEndian.AppendUint64(b, d.epoch)
	b = binary.AppendUvarint(b, uint64(len(target)))
	b = append(b, target...)
	d.pre = b
	d.h.Reset()
	d.h.Write(b)
	mid, err := d.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic("probe: sha256 state does not marshal: " + err.Error())
	}
	un := d.h.(encoding.BinaryUnmarshaler)
	fast := stateIsDigest()
	tails := d.tails[len(b)]
	if fast && tails == nil {
		tails = make([][]byte, len(d.alive))
		for i, s := range d.suffix {
			tails[i] = padded(s, len(b)+len(s))
		}
		d.tails[len(b)] = tails
	}
	ap := d.h.(encoding.BinaryAppender)
	for i, p := range d.alive {
		if p == target {
			continue
		}
		if err := un.UnmarshalBinary(mid); err != nil {
			panic("probe: sha256 state does not unmarshal: " + err.Error())
		}
		var c drawn
		if fast {
			d.h.Write(tails[i])
			d.buf, _ = ap.AppendBinary(d.buf[:0])
			c = drawn{i: i}
			copy(c.s[:], d.buf[len(stateMagic):])
		} else {
			d.h.Write(d.suffix[i])
			d.buf = d.h.Sum(d.buf[:0])
			c = drawn{i: i}
			copy(c.s[:], d.buf)
		}
		x := d.dom[i]
		if d.gen[x] != d.round || d.less(c, d.best[x]) < 0 {
			d.best[x], d.gen[x] = c, d.round
		}
	}
	// The n best domains, best first, by insertion into a short list.
	top := d.top[:0]
	for x := range d.best {
		if d.gen[x] != d.round {
			continue
		}
		c := d.best[x]
		if len(top) == d.n && (d.n == 0 || d.less(c, top[len(top)-1]) >= 0) {
			continue
		}
		at := len(top)
		for at > 0 && d.less(c, top[at-1]) < 0 {
			at--
		}
		if len(top) < d.n {
			top = append(top, drawn{})
		}
		copy(top[at+1:], top[at:len(top)-1])
		top[at] = c
	}
	d.top = top
	out := make([]Seat, len(top))
	for k, c := range top {
		out[k] = Seat{Domain: d.names[d.dom[c.i]], Holder: d.alive[c.i]}
	}
	return out
}

// less orders scores as [Committee] does: by score, then by peer ID.
func (d *Draw) less(a, b drawn) int {
	if c := bytes.Compare(a.s[:], b.s[:]); c != 0 {
		return c
	}
	return bytes.Compare([]byte(d.alive[a.i]), []byte(d.alive[b.i]))
}

// stateMagic prefixes crypto/sha256's marshaled state; the eight state
// words follow it, big-endian.
const stateMagic = "sha\x03"

var stateOK = sync.OnceValue(func() bool {
	msg := []byte("mirrornet-probe-assign/1: is a marshaled state after whole padded blocks the digest?")
	h := sha256.New()
	h.Write(padded(msg, len(msg)))
	st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	want := sha256.Sum256(msg)
	return err == nil && len(st) >= len(stateMagic)+32 && string(st[:len(stateMagic)]) == stateMagic && bytes.Equal(st[len(stateMagic):len(stateMagic)+32], want[:])
})

// stateIsDigest reports whether, in this build, the SHA-256 state after
// whole padded blocks, as marshaled, is the digest.
func stateIsDigest() bool { return stateOK() }

// padded returns tail followed by SHA-256's padding of a message of total
// length total whose last bytes tail are.
func padded(tail []byte, total int) []byte {
	out := append(make([]byte, 0, len(tail)+72), tail...)
	out = append(out, 0x80)
	for (total+len(out)-len(tail))%64 != 56 {
		out = append(out, 0)
	}
	return binary.BigEndian.AppendUint64(out, uint64(total)*8)
}
