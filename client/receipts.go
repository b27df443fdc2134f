package client

// Delivery receipts: after a fetch, the client signs one receipt per mirror
// that delivered verified bytes ("mirror M delivered B verified bytes of
// CID to me at T") with a key it keeps between runs, and posts the batch
// to a few of the mirrors it knows. A mirror that receives a post
// witnesses it (signs the receipts with the client network it saw on the
// connection) and gossips the witness; a fund's ledger counts a receipt
// through a witness outside the credited mirror's failure domain, capped
// per client key and per client network. So every batch goes to at least
// two mirrors: a mirror cannot vouch for its own traffic.

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// ErrReceipts: no witness accepted the client's receipts.
var ErrReceipts = errors.New("client: receipts not accepted")

// LoadClientKey reads the client's Ed25519 key from path, or makes one and
// writes it there (mode 0600, through a temporary file renamed into place)
// when path does not exist: the ledger caps what one client key counts
// for, so the key must outlive a run.
func LoadClientKey(path string) (crypto.PrivKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("client: key %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("client: key: %w", err)
	}
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("client: key: %w", err)
	}
	if b, err = crypto.MarshalPrivateKey(k); err != nil {
		return nil, fmt.Errorf("client: key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("client: key: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".client-key-")
	if err != nil {
		return nil, fmt.Errorf("client: key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("client: key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("client: key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("client: key: %w", err)
	}
	// Link, not rename: a concurrent run that made its own key first wins,
	// and both then sign with the one on disk.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return LoadClientKey(path)
		}
		return nil, fmt.Errorf("client: key: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return k, nil
}

// ReceiptOptions configure [SendReceipts].
type ReceiptOptions struct {
	// Key is the client's key (see LoadClientKey). Required.
	Key crypto.PrivKey
	// HTTPClient posts the receipts. Default: http.DefaultClient.
	HTTPClient *http.Client
	// Now is the receipts' time. Default time.Now.
	Now func() time.Time
	// Witnesses is how many mirrors the batch is posted to. Default (and
	// minimum) 2: a receipt needs a witness other than the mirror it
	// credits.
	Witnesses int
}

// ReceiptReport says what SendReceipts did.
type ReceiptReport struct {
	// Receipts are the signed receipts, one per mirror credited.
	Receipts [][]byte
	// Witnesses are the mirrors that accepted the batch; Refused those
	// that did not, with why.
	Witnesses []string
	Refused   []Drop
}

// SignReceipts signs one receipt per mirror of res that delivered verified
// bytes and whose peer ID a signed liveness statement named (res.Peers).
func SignReceipts(key crypto.PrivKey, res *Result, now time.Time) ([][]byte, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("client: receipts: %w", err)
	}
	urls := make([]string, 0, len(res.PerMirror))
	for u, n := range res.PerMirror {
		if n > 0 && res.Peers[u] != "" && res.Peers[u] != id.String() {
			urls = append(urls, u)
		}
	}
	slices.Sort(urls)
	// Sequence numbers rise with the time, one per receipt.
	seq := uint64(now.UnixNano())
	var out [][]byte
	for i, u := range urls {
		raw, err := attest.SignReceipt(key, protocol.Receipt{Client: id.String(), Seq: seq + uint64(i), Time: now.UnixMilli(),
			Mirror: res.Peers[u], CID: res.Root.String(), Bytes: uint64(res.PerMirror[u])})
		if err != nil {
			return nil, fmt.Errorf("client: receipts: %w", err)
		}
		out = append(out, raw)
	}
	return out, nil
}

// SendReceipts signs res's receipts and posts them to o.Witnesses mirrors:
// those that delivered most first, then other mirrors the fetch found up.
// It returns ErrReceipts when receipts were signed but no mirror accepted
// them; a fetch whose mirrors named no peer ID sends nothing.
func SendReceipts(ctx context.Context, res *Result, o ReceiptOptions) (ReceiptReport, error) {
	var rep ReceiptReport
	if o.Key == nil {
		return rep, fmt.Errorf("%w: ReceiptOptions.Key is nil", ErrOptions)
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Witnesses = max(o.Witnesses, 2)
	resolvePeers(ctx, o.HTTPClient, res, o.Now())
	receipts, err := SignReceipts(o.Key, res, o.Now())
	if err != nil || len(receipts) == 0 {
		return rep, err
	}
	rep.Receipts = receipts
	if len(receipts) > protocol.MaxReceiptsPerPost {
		receipts = receipts[:protocol.MaxReceiptsPerPost]
	}
	var body bytes.Buffer
	for _, r := range receipts {
		_ = protocol.WriteFrame(&body, r)
	}
	_ = protocol.WriteFrame(&body, nil)
	for _, u := range witnesses(res) {
		if len(rep.Witnesses) >= o.Witnesses {
			break
		}
		if err := postReceipts(ctx, o.HTTPClient, u, body.Bytes()); err != nil {
			rep.Refused = append(rep.Refused, Drop{Mirror: u, Reason: err.Error()})
			continue
		}
		rep.Witnesses = append(rep.Witnesses, u)
	}
	if len(rep.Witnesses) == 0 {
		return rep, fmt.Errorf("%w: %d mirrors tried", ErrReceipts, len(rep.Refused))
	}
	return rep, nil
}

// resolvePeers fills in res.Peers for mirrors that delivered bytes before
// their liveness statements reached the fetch (a small bundle can be done
// first): it asks each such mirror for its statements and keeps the peer
// ID whose signed statement names the mirror's URL (and those of the
// other mirrors the statements name, as candidate witnesses).
func resolvePeers(ctx context.Context, hc *http.Client, res *Result, now time.Time) {
	for u, n := range res.PerMirror {
		if n <= 0 || res.Peers[u] != "" {
			continue
		}
		d := DefaultOptions()
		v := newHealthView(d.MaxStatementBytes)
		cctx, cancel := context.WithTimeout(ctx, d.ProbeTimeout)
		_ = httpStatements(cctx, hc, u, d.MaxSourceBytes, func(raw []byte) { v.add(u, raw, now) })
		cancel()
		// Every mirror the statements name is a candidate witness too.
		for url, id := range v.peersByURL(now, d.MaxAge) {
			if res.Peers == nil {
				res.Peers = map[string]string{}
			}
			if res.Peers[url] == "" {
				res.Peers[url] = id
			}
		}
	}
}

// witnesses orders the mirrors to post receipts to: those that delivered,
// most bytes first, then the other mirrors with a known peer ID.
func witnesses(res *Result) []string {
	var used, other []string
	for u, id := range res.Peers {
		if id == "" {
			continue
		}
		if res.PerMirror[u] > 0 {
			used = append(used, u)
		} else {
			other = append(other, u)
		}
	}
	slices.SortFunc(used, func(a, b string) int {
		if d := res.PerMirror[b] - res.PerMirror[a]; d != 0 {
			return int(max(-1, min(1, d)))
		}
		return cmp.Compare(a, b)
	})
	slices.Sort(other)
	return append(used, other...)
}

func postReceipts(ctx context.Context, hc *http.Client, base string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+protocol.HTTPReceiptsPath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := hc.Do(req)
	if err != nil {
		return errors.New(shortErr(err))
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}
