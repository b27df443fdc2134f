// Package p2plimits sets what strangers can cost a mirror at the libp2p
// layer: go-libp2p's resource manager with explicit limits (connections,
// streams and memory, in total and per peer) and a connection manager that
// trims connections between a low and a high water mark.
//
// Use:
//
//	opts, err := p2plimits.Options(p2plimits.DefaultConfig())
//	h, err := libp2p.New(append(opts, libp2p.Identity(key))...)
//
// The host owns and closes both managers.
package p2plimits

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
)

// ErrConfig reports a limit out of range.
var ErrConfig = errors.New("p2plimits: invalid config")

// Config is the limits. Every field is explicit: nothing is scaled from the
// machine's memory at run time, so two mirrors with the same flags behave
// the same.
type Config struct {
	// ConnsLow and ConnsHigh are the connection manager's water marks:
	// once more than ConnsHigh peers are connected, the least valuable
	// connections (untagged, outside the grace period) are closed until
	// ConnsLow remain. Gossip meshes need a dozen peers; a mirror serving
	// bitswap to many more is still far below 192.
	ConnsLow, ConnsHigh int
	// GracePeriod protects new connections from trimming.
	GracePeriod time.Duration
	// Memory is the resource manager's total memory budget for libp2p
	// (stream and connection buffers), and FDs its file descriptor limit.
	Memory int64
	FDs    int
	// ConnsPerPeer and StreamsPerPeer bound one peer: a stranger cannot
	// hold more connections or open more streams than this, whatever it
	// sends. Inbound streams are half of StreamsPerPeer.
	ConnsPerPeer   int
	StreamsPerPeer int
	// PeerMemory bounds one peer's share of Memory (yamux windows grow
	// into it on fast transfers).
	PeerMemory int64
	// InboundConns bounds inbound connections in total (half-open
	// handshakes included).
	InboundConns int
}

// DefaultConfig: 64/192 connections, 1 GiB and 4096 descriptors for
// libp2p, 8 connections, 256 streams and 64 MiB per peer, 256 inbound
// connections.
func DefaultConfig() Config {
	return Config{
		ConnsLow: 64, ConnsHigh: 192, GracePeriod: 30 * time.Second,
		Memory: 1 << 30, FDs: 4096,
		ConnsPerPeer: 8, StreamsPerPeer: 256, PeerMemory: 64 << 20,
		InboundConns: 256,
	}
}

// Validate names the first field out of range.
func (c Config) Validate() error {
	switch {
	case c.ConnsLow < 0 || c.ConnsHigh <= 0 || c.ConnsLow > c.ConnsHigh:
		return fmt.Errorf("%w: conns-low %d / conns-high %d: want 0 <= low <= high, high > 0", ErrConfig, c.ConnsLow, c.ConnsHigh)
	case c.Memory <= 0 || c.FDs <= 0:
		return fmt.Errorf("%w: memory and file descriptors must be positive", ErrConfig)
	case c.ConnsPerPeer <= 0 || c.StreamsPerPeer <= 1 || c.PeerMemory <= 0 || c.InboundConns <= 0:
		return fmt.Errorf("%w: per-peer and inbound limits must be positive", ErrConfig)
	}
	return nil
}

// Limits returns the resource manager's concrete limits for c: go-libp2p's
// default scaling config (with its service defaults) scaled to c.Memory and
// c.FDs, with the per-peer and inbound limits replaced by c's.
func (c Config) Limits() rcmgr.ConcreteLimitConfig {
	scaling := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&scaling)
	base := scaling.Scale(c.Memory, c.FDs)
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			ConnsInbound: rcmgr.LimitVal(c.InboundConns),
		},
		Transient: rcmgr.ResourceLimits{
			ConnsInbound: rcmgr.LimitVal(max(c.InboundConns/4, 1)),
		},
		PeerDefault: rcmgr.ResourceLimits{
			Conns:           rcmgr.LimitVal(c.ConnsPerPeer),
			ConnsInbound:    rcmgr.LimitVal(max(c.ConnsPerPeer/2, 1)),
			ConnsOutbound:   rcmgr.LimitVal(c.ConnsPerPeer),
			Streams:         rcmgr.LimitVal(c.StreamsPerPeer),
			StreamsInbound:  rcmgr.LimitVal(c.StreamsPerPeer / 2),
			StreamsOutbound: rcmgr.LimitVal(c.StreamsPerPeer),
			Memory:          rcmgr.LimitVal64(c.PeerMemory),
		},
	}
	return partial.Build(base)
}

// Options returns the libp2p options that install both managers.
func Options(c Config) ([]libp2p.Option, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(c.Limits()))
	if err != nil {
		return nil, fmt.Errorf("p2plimits: resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(c.ConnsLow, c.ConnsHigh, connmgr.WithGracePeriod(c.GracePeriod))
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("p2plimits: connection manager: %w", err)
	}
	return []libp2p.Option{libp2p.ResourceManager(rm), libp2p.ConnectionManager(cm)}, nil
}
