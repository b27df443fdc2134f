package runner

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/protocol"
)

// MaxBlockSize bounds one fetched block: bitswap's 2 MiB limit, above the
// 1 MiB chunks of the unixfs-v1-2025 profile.
const MaxBlockSize = 2 << 20

// Fetch errors.
var (
	ErrStatus   = errors.New("runner: gateway answered with an error status")
	ErrTooLarge = errors.New("runner: block exceeds the size limit")
)

// HTTPFetcher fetches raw blocks from trustless gateways:
// GET {base}/ipfs/{cid}?format=raw with Accept: application/vnd.ipld.raw
// and the challenge headers (protocol.HeaderProbeObserver,
// protocol.HeaderProbeNonce); it returns the target's receipt header and
// the address of the connection that answered.
type HTTPFetcher struct {
	// Client is the HTTP client; nil means http.DefaultClient. Deadlines
	// come from the request context.
	Client *http.Client
}

var _ Fetcher = (*HTTPFetcher)(nil)

// FetchBlock fetches c's bytes (unverified) from base, reading at most
// MaxBlockSize bytes.
func (f *HTTPFetcher) FetchBlock(ctx context.Context, base string, c cid.Cid, ch Challenge) (Block, error) {
	var b Block
	url := strings.TrimRight(base, "/") + "/ipfs/" + c.String() + "?format=raw"
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
		if ap, err := netip.ParseAddrPort(ci.Conn.RemoteAddr().String()); err == nil {
			b.Addr = ap.Addr().Unmap()
		}
	}})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return b, fmt.Errorf("runner: request %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/vnd.ipld.raw")
	if ch.Observer != "" {
		req.Header.Set(protocol.HeaderProbeObserver, ch.Observer.String())
		req.Header.Set(protocol.HeaderProbeNonce, hex.EncodeToString(ch.Nonce[:]))
	}
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return b, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return b, fmt.Errorf("%w: %s for %s", ErrStatus, resp.Status, c)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxBlockSize+1))
	if err != nil {
		return b, err
	}
	if len(data) > MaxBlockSize {
		return b, fmt.Errorf("%w: %s", ErrTooLarge, c)
	}
	b.Data, b.Receipt = data, resp.Header.Get(protocol.HeaderProbeReceipt)
	return b, nil
}

// ReceiptHandler is the target's side of a challenge: it wraps a trustless
// gateway so that a raw-block request carrying the challenge headers, when
// answered 200, also carries this mirror's signed receipt
// (protocol.HeaderProbeReceipt) for that block, observer and nonce, made at
// clock(). Requests without valid challenge headers pass through
// untouched; a receipt is never made for an answer that is not a 200, so a
// mirror that lost a block cannot be credited for it.
func ReceiptHandler(next http.Handler, key crypto.PrivKey, clock func() time.Time) (http.Handler, error) {
	self, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: receipt key: %v", ErrConfig, err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		obs, nonce, c, ok := challengeOf(r, self)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&receiptWriter{ResponseWriter: w, sign: func() string {
			s, err := attest.SignProbeReceipt(key, obs, nonce, c, clock())
			if err != nil {
				return ""
			}
			return s
		}}, r)
	}), nil
}

// challengeOf parses a challenge request: GET /ipfs/{cid} of a raw block,
// with a peer ID and a 32-hex-digit nonce in the challenge headers.
func challengeOf(r *http.Request, self peer.ID) (observer string, nonce [16]byte, c string, ok bool) {
	obs, hexNonce := r.Header.Get(protocol.HeaderProbeObserver), r.Header.Get(protocol.HeaderProbeNonce)
	if obs == "" || r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/ipfs/") {
		return "", nonce, "", false
	}
	if r.URL.Query().Get("format") != "raw" && !strings.Contains(r.Header.Get("Accept"), "application/vnd.ipld.raw") {
		return "", nonce, "", false
	}
	blk, err := cid.Decode(strings.TrimPrefix(r.URL.Path, "/ipfs/"))
	if err != nil {
		return "", nonce, "", false
	}
	o, err := peer.Decode(obs)
	if err != nil || o == self || len(hexNonce) != 32 {
		return "", nonce, "", false
	}
	if _, err := hex.Decode(nonce[:], []byte(hexNonce)); err != nil {
		return "", nonce, "", false
	}
	return o.String(), nonce, blk.String(), true
}

// receiptWriter adds the receipt header when the status is 200.
type receiptWriter struct {
	http.ResponseWriter
	sign  func() string
	wrote bool
}

func (w *receiptWriter) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		if code == http.StatusOK {
			if s := w.sign(); s != "" {
				w.Header().Set(protocol.HeaderProbeReceipt, s)
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *receiptWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *receiptWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
