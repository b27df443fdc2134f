// Package yamux is go-yamux v5.1.0 (github.com/libp2p/go-yamux, MPL-2.0
// and BSD: see LICENSE and LICENSE-BSD here) with one change, and a
// network.Multiplexer for libp2p hosts (Transport, Option), the
// counterpart of go-libp2p's p2p/muxer/yamux.
//
// The change: a stream's receive window starts at 256 KiB and upstream
// doubles it at a window update only if the reader took half the window
// within four round trips of the previous update, so a stream that carries
// bulk data over a 40 ms path needs five round trips (about 0.2 - 0.4 s)
// to reach 8 MiB, and the first 1 MiB block on a new stream takes three.
// Here a stream whose reader took half its window within two round trips
// jumps to Config.FastStreamWindowSize at once (see sendWindowUpdate in
// stream.go, marked "mirrornet"). Streams that carry small messages
// (gossip, probes, identify) never take half a window that fast and keep
// upstream's behaviour. Every byte of growth, the jump included, is first
// reserved through the stream's MemoryManager (the libp2p resource
// manager's peer scope) at the priority upstream uses for growth, so a
// window grows only as far as the mirror's memory limits allow; if the
// jump is refused the window doubles as upstream's does. The wire
// protocol is unchanged: any yamux peer reads the larger window updates.
//
// Nothing else differs from upstream v5.1.0 (the files are copied
// unchanged otherwise, without upstream's tests), so a later go-yamux
// release that offers this (or a per-stream window) replaces the package.
package yamux
