package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/ipfs/go-cid"
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
// GET {base}/ipfs/{cid}?format=raw with Accept: application/vnd.ipld.raw.
type HTTPFetcher struct {
	// Client is the HTTP client; nil means http.DefaultClient. Deadlines
	// come from the request context.
	Client *http.Client
}

var _ Fetcher = (*HTTPFetcher)(nil)

// FetchBlock fetches c's bytes (unverified) from base, reading at most
// MaxBlockSize bytes.
func (f *HTTPFetcher) FetchBlock(ctx context.Context, base string, c cid.Cid) ([]byte, error) {
	url := strings.TrimRight(base, "/") + "/ipfs/" + c.String() + "?format=raw"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("runner: request %s: %w", url, err)
	}
	req.Header.Set("Accept", "application/vnd.ipld.raw")
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("%w: %s for %s", ErrStatus, resp.Status, c)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxBlockSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxBlockSize {
		return nil, fmt.Errorf("%w: %s", ErrTooLarge, c)
	}
	return data, nil
}
