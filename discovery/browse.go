package discovery

import (
	"context"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/zeroconf/v2"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/mirrornet/mirrornet/protocol"
)

// dnsaddrPrefix marks the TXT records in which libp2p's mDNS service
// announces a peer's multiaddrs.
const dnsaddrPrefix = "dnsaddr="

// BrowseMirrors listens on the LAN for mirrors announcing themselves by
// mDNS, for at most window (or until ctx ends), and returns one dialable
// /p2p/ multiaddr per address of each mirror found. It only listens: it
// announces nothing, so a light client is never mistaken for a mirror.
// Finding nothing is not an error.
func BrowseMirrors(ctx context.Context, window time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	entries := make(chan *zeroconf.ServiceEntry, 64)
	browseErr := make(chan error, 1)
	go func() { browseErr <- zeroconf.Browse(ctx, protocol.MDNSServiceName, "local", entries) }()
	var out []string
	seen := map[string]bool{}
	for {
		select {
		case e, ok := <-entries:
			if !ok {
				return out, nil
			}
			for _, a := range mirrorAddrs(e.Text) {
				if !seen[a] {
					seen[a] = true
					out = append(out, a)
				}
			}
		case err := <-browseErr:
			if err != nil && ctx.Err() == nil {
				return out, err
			}
			<-ctx.Done()
			return out, nil
		case <-ctx.Done():
			return out, nil
		}
	}
}

// mirrorAddrs extracts /p2p/ multiaddrs from mDNS TXT records.
func mirrorAddrs(txt []string) []string {
	var out []string
	for _, t := range txt {
		if !strings.HasPrefix(t, dnsaddrPrefix) {
			continue
		}
		m, err := ma.NewMultiaddr(strings.TrimPrefix(t, dnsaddrPrefix))
		if err != nil {
			continue
		}
		if _, err := peer.AddrInfoFromP2pAddr(m); err != nil {
			continue
		}
		out = append(out, m.String())
	}
	return out
}
