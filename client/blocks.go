package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	mdag "github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	car "github.com/ipld/go-car/v2"
	mh "github.com/multiformats/go-multihash"
)

// Failure classes of one request. A hard failure proves the mirror wrong
// (bytes that do not verify, a malformed CAR, an error status for a root it
// claimed to hold); a soft one may be the network's fault (stall, reset,
// truncation). Both drop the mirror; soft-dropped mirrors get one second
// chance when nothing else is left.
var (
	errHashMismatch = errors.New("hash mismatch")
	errStalled      = errors.New("stalled")
	errLostRace     = errors.New("lost race")
	errDropped      = errors.New("mirror dropped")
	errDone         = errors.New("download finished")
	errResume       = errors.New("resumed block did not verify")
	errOverBudget   = errors.New("subtree CAR larger than its Tsize")
)

// failure is a classified request error.
type failure struct {
	soft   bool
	reason string
}

func (f *failure) Error() string { return f.reason }

func hard(format string, a ...any) error { return &failure{reason: fmt.Sprintf(format, a...)} }
func soft(format string, a ...any) error {
	return &failure{soft: true, reason: fmt.Sprintf(format, a...)}
}

// link is a child of a verified block.
type link struct {
	c     cid.Cid
	size  int64  // block size hint for raw leaves (their Tsize), else 0
	tsize uint64 // the link's Tsize: the bytes of the whole subtree
}

// block is a verified block.
type block struct {
	c    cid.Cid
	data []byte
}

// verifyBlock checks that data hashes to c.
func verifyBlock(c cid.Cid, data []byte) error {
	got, err := c.Prefix().Sum(data)
	if err != nil {
		return fmt.Errorf("%w: hashing %s: %v", ErrUnsupported, c, err)
	}
	if !got.Equals(c) {
		return errHashMismatch
	}
	return nil
}

// linksOf decodes the children of a verified block.
func linksOf(c cid.Cid, data []byte) ([]link, error) {
	switch c.Type() {
	case cid.Raw:
		return nil, nil
	case cid.DagProtobuf:
		nd, err := mdag.DecodeProtobuf(data)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrUnsupported, c, err)
		}
		out := make([]link, 0, len(nd.Links()))
		for _, l := range nd.Links() {
			var size int64
			if l.Cid.Type() == cid.Raw && l.Size <= MaxBlockSize {
				size = int64(l.Size)
			}
			out = append(out, link{c: l.Cid, size: size, tsize: l.Size})
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%w: %s has codec 0x%x (want dag-pb or raw)", ErrUnsupported, c, c.Type())
	}
}

// identityData returns the bytes inlined in an identity CID.
func identityData(c cid.Cid) ([]byte, bool) {
	if c.Prefix().MhType != mh.IDENTITY {
		return nil, false
	}
	dec, err := mh.Decode(c.Hash())
	if err != nil {
		return nil, false
	}
	return dec.Digest, true
}

// countingReader counts bytes read into n, for the stall watchdog.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// reply is what one request produced.
type reply struct {
	data    []byte        // verified block, or nil
	partial []byte        // raw: unverified bytes received before a soft failure (whole block so far, prefix included)
	ttfb    time.Duration // response headers after request start
	usedPre int           // prefix bytes of the job this reply builds on (a 206 answer)
	more    []block       // subtree CARs: verified blocks after the first, in traversal order (also on error)
	err     error
}

// fetchBlock asks one mirror for one block: a one-block CARv1 for dag-pb
// nodes, the raw bytes (resuming after prefix with Range) otherwise. With
// subtree > 0 a dag-pb node comes with its whole subtree (dag-scope=all),
// at most subtree bytes of CAR.
func fetchBlock(ctx context.Context, hc *http.Client, base string, c cid.Cid, prefix []byte, subtree int64, read *atomic.Int64) reply {
	isCAR := c.Type() != cid.Raw
	u := base + "/ipfs/" + c.String()
	switch {
	case isCAR && subtree > 0:
		u += "?format=car&dag-scope=all"
	case isCAR:
		u += "?format=car&dag-scope=block"
	default:
		u += "?format=raw"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return reply{err: hard("request: %v", err)}
	}
	if isCAR {
		req.Header.Set("Accept", "application/vnd.ipld.car; version=1; order=dfs; dups=n")
	} else {
		req.Header.Set("Accept", "application/vnd.ipld.raw")
		if len(prefix) > 0 {
			req.Header.Set("Range", "bytes="+strconv.Itoa(len(prefix))+"-")
		}
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return reply{err: transportErr(ctx, err)}
	}
	defer resp.Body.Close()
	r := reply{ttfb: time.Since(start)}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusPartialContent && !isCAR && len(prefix) > 0:
		if err := checkContentRange(resp.Header.Get("Content-Range"), len(prefix)); err != nil {
			r.err = hard("%v", err)
			return r
		}
		r.usedPre = len(prefix)
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && len(prefix) > 0:
		// The prefix (from a mirror that died midway) may be longer
		// than the block: it was not this mirror's doing.
		r.err = errResume
		return r
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		r.err = soft("HTTP %d", resp.StatusCode)
		return r
	default:
		r.err = hard("HTTP %d for a block of a bundle it holds", resp.StatusCode)
		return r
	}
	body := countingReader{r: resp.Body, n: read}
	if isCAR && subtree > 0 {
		var blks []block
		blks, r.err = readSubtreeCAR(ctx, body, c, subtree)
		if len(blks) > 0 {
			r.data, r.more = blks[0].data, blks[1:]
		}
		return r
	}
	if isCAR {
		r.data, r.err = readOneBlockCAR(ctx, body, c)
		return r
	}
	limit := int64(MaxBlockSize - r.usedPre)
	buf, err := readBody(body, resp.ContentLength, limit+1)
	whole := buf
	if r.usedPre > 0 {
		whole = append(append(make([]byte, 0, r.usedPre+len(buf)), prefix...), buf...)
	}
	if err != nil {
		r.err = transportErr(ctx, err)
		r.partial = whole
		return r
	}
	if int64(len(buf)) > limit {
		r.err = hard("block larger than %d bytes", MaxBlockSize)
		return r
	}
	if err := verifyBlock(c, whole); err != nil {
		if errors.Is(err, errHashMismatch) && r.usedPre > 0 {
			// The prefix came from another mirror: either may have lied.
			r.err = errResume
		} else if errors.Is(err, errHashMismatch) {
			r.err = hard("hash mismatch for %s", c)
		} else {
			r.err = err
		}
		return r
	}
	r.data = whole
	return r
}

// readBody reads a response body of at most limit bytes. When the
// response declares its length (within limit) the bytes are read into
// memory of exactly that size, not through io.ReadAll's doubling (a 1 MiB
// leaf would be copied about twice over and zeroed in pieces); a body that
// turns out longer or shorter than declared is still read and judged by
// its bytes.
func readBody(body io.Reader, declared, limit int64) ([]byte, error) {
	if declared <= 0 || declared >= limit {
		return io.ReadAll(io.LimitReader(body, limit))
	}
	buf := make([]byte, declared, declared+1)
	n, err := io.ReadFull(body, buf)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return buf[:n], err
	}
	// Anything after the declared length makes the block too long.
	var one [1]byte
	if k, _ := io.ReadFull(body, one[:]); k > 0 {
		rest, err := io.ReadAll(io.LimitReader(body, limit-declared-1))
		return append(append(buf, one[0]), rest...), err
	}
	return buf, nil
}

// checkContentRange accepts "bytes FROM-TO/SIZE" with FROM == from.
func checkContentRange(v string, from int) error {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return fmt.Errorf("bad Content-Range %q", v)
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok || first != strconv.Itoa(from) {
		return fmt.Errorf("Content-Range %q does not start at %d", v, from)
	}
	return nil
}

// readCARHeader reads a CARv1 header that must name exactly root c and
// returns a block reader positioned at the first block.
func readCARHeader(ctx context.Context, lr *io.LimitedReader, c cid.Cid) (*car.BlockReader, error) {
	// Read the header frame first, so a CARv2 is refused before the block
	// reader tries to seek inside it.
	in := bufio.NewReader(lr)
	n, err := binary.ReadUvarint(in)
	if err != nil {
		return nil, carErr(ctx, lr, "CAR header", err)
	}
	if n == 0 || n > maxCARHeader {
		return nil, hard("CAR header of %d bytes", n)
	}
	hdr := make([]byte, n)
	if _, err := io.ReadFull(in, hdr); err != nil {
		return nil, carErr(ctx, lr, "CAR header", err)
	}
	frame := append(binary.AppendUvarint(nil, n), hdr...)
	if v, err := car.ReadVersion(bytes.NewReader(frame)); err != nil {
		return nil, hard("malformed CAR header: %v", err)
	} else if v != 1 {
		return nil, hard("CARv%d where CARv1 is required", v)
	}
	// TrustedCAR: nextBlock verifies every block itself (one hash per
	// block, not two) and classifies a mismatch as the mirror's fault.
	br, err := car.NewBlockReader(io.MultiReader(bytes.NewReader(frame), in),
		car.WithTrustedCAR(true),
		car.MaxAllowedHeaderSize(maxCARHeader),
		car.MaxAllowedSectionSize(MaxBlockSize+128))
	if err != nil {
		return nil, carErr(ctx, lr, "CAR header", err)
	}
	if br.Version != 1 {
		return nil, hard("CARv%d where CARv1 is required", br.Version)
	}
	if len(br.Roots) != 1 {
		return nil, hard("CAR has %d roots, want 1", len(br.Roots))
	}
	if !br.Roots[0].Equals(c) {
		return nil, hard("wrong CAR root %s, want %s", br.Roots[0], c)
	}
	return br, nil
}

// nextBlock reads the next block of a CAR, which must be want, verified.
func nextBlock(ctx context.Context, lr *io.LimitedReader, br *car.BlockReader, want cid.Cid) ([]byte, error) {
	blk, err := br.Next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, hard("incomplete CAR: missing block %s", want)
		}
		return nil, carErr(ctx, lr, "CAR block", err)
	}
	if !blk.Cid().Equals(want) {
		return nil, hard("out-of-order or unexpected block %s in CAR, want %s", blk.Cid(), want)
	}
	data := blk.RawData()
	if err := verifyBlock(want, data); err != nil {
		return nil, hard("hash mismatch for %s", want)
	}
	return data, nil
}

// endOfCAR checks that nothing follows the last wanted block.
func endOfCAR(ctx context.Context, lr *io.LimitedReader, br *car.BlockReader, last cid.Cid) error {
	if _, err := br.Next(); !errors.Is(err, io.EOF) {
		if err == nil {
			return hard("extraneous block after %s in CAR", last)
		}
		return carErr(ctx, lr, "CAR trailer", err)
	}
	return nil
}

// readOneBlockCAR reads a CARv1 that must hold exactly root c with exactly
// the block c, verified.
func readOneBlockCAR(ctx context.Context, body io.Reader, c cid.Cid) ([]byte, error) {
	lr := &io.LimitedReader{R: body, N: MaxBlockSize + maxCARHeader + 256}
	br, err := readCARHeader(ctx, lr, c)
	if err != nil {
		return nil, err
	}
	data, err := nextBlock(ctx, lr, br, c)
	if err != nil {
		return nil, err
	}
	if err := endOfCAR(ctx, lr, br, c); err != nil {
		return nil, err
	}
	return data, nil
}

// readSubtreeCAR reads a CARv1 of the whole DAG under c (dag-scope=all,
// dups=n), at most limit bytes, verifying every block in depth-first
// traversal order (links in order, a block seen before is not sent again,
// identity CIDs never are). It returns the blocks verified before any
// error: they are good whatever came after them.
func readSubtreeCAR(ctx context.Context, body io.Reader, c cid.Cid, limit int64) ([]block, error) {
	lr := &io.LimitedReader{R: body, N: limit}
	br, err := readCARHeader(ctx, lr, c)
	if err != nil {
		return nil, err
	}
	var out []block
	seen := map[cid.Cid]bool{}
	stack := []cid.Cid{c}
	last := c
	for len(stack) > 0 {
		next := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, isID := identityData(next); isID || seen[next] {
			continue
		}
		data, err := nextBlock(ctx, lr, br, next)
		if err != nil {
			if lr.N <= 0 {
				// The DAG's Tsize may understate it: not
				// necessarily the mirror's fault.
				return out, errOverBudget
			}
			return out, err
		}
		seen[next], last = true, next
		out = append(out, block{c: next, data: data})
		links, err := linksOf(next, data)
		if err != nil {
			return out, err
		}
		for i := len(links) - 1; i >= 0; i-- {
			stack = append(stack, links[i].c)
		}
	}
	if err := endOfCAR(ctx, lr, br, last); err != nil {
		if lr.N <= 0 {
			return out, errOverBudget
		}
		return out, err
	}
	return out, nil
}

// carErr classifies an error reading a CAR: cancellation and transport
// errors are soft, a response over budget or malformed bytes are hard.
func carErr(ctx context.Context, lr *io.LimitedReader, what string, err error) error {
	if ctx.Err() != nil {
		return transportErr(ctx, err)
	}
	if lr.N <= 0 {
		return hard("CAR larger than the blocks asked for")
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || isNetErr(err) {
		return soft("truncated %s: %v", what, err)
	}
	if strings.Contains(err.Error(), "mismatch in content integrity") {
		return hard("hash mismatch in CAR")
	}
	return hard("malformed %s: %v", what, err)
}

// transportErr classifies a transport error; a cancelled request reports
// why it was cancelled.
func transportErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return soft("truncated response")
	}
	return soft("transport: %v", shortErr(err))
}

func isNetErr(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) || strings.Contains(err.Error(), "connection reset")
}

// shortErr strips the URL net/http puts in front of transport errors.
func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "\": "); i >= 0 {
		return s[i+3:]
	}
	return s
}
