package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Download GETs an admin route (e.g. /debug/pprof/heap) and copies the
// answer to w; an error answer's message is the error.
func (c *AdminClient) Download(ctx context.Context, path string, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://admin"+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscallECONNREFUSED()) || strings.Contains(err.Error(), "connection refused") {
			return 0, fmt.Errorf("%w: %s refuses connections (stale socket from a stopped node?)", ErrNoNode, c.path)
		}
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return 0, fmt.Errorf("node answered %s: %s", resp.Status, trimLine(string(msg)))
	}
	return io.Copy(w, resp.Body)
}

func trimLine(s string) string { return strings.TrimRight(s, "\r\n") }
