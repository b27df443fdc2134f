package bitswapserve

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
)

// recordingStream records the sizes of the writes made to it.
type recordingStream struct {
	network.Stream
	writes []int
}

func (s *recordingStream) Write(b []byte) (int, error) {
	s.writes = append(s.writes, len(b))
	return len(b), nil
}

func (s *recordingStream) SetWriteDeadline(time.Time) error { return nil }

// yamuxHeader is the size of a yamux frame header (go-yamux's headerSize).
const yamuxHeader = 12

// A 1 MiB answer goes out in writes that each fit, with yamux's frame
// header, in one Noise message: no write is split into a full message and
// a runt, so a MiB costs 17 encryptions and socket writes, not 48.
func TestChunksFitOneNoiseMessage(t *testing.T) {
	s := &recordingStream{}
	var progressed int
	w := &chunkWriter{s: s, stall: time.Minute, progress: func(k int) { progressed += k }}
	const size = 1 << 20
	n, err := w.Write(make([]byte, size))
	if err != nil || n != size || progressed != size {
		t.Fatalf("wrote %d (progress %d) of %d: %v", n, progressed, size, err)
	}
	for _, k := range s.writes {
		if k+yamuxHeader > noise.MaxPlaintextLength {
			t.Fatalf("a write of %d bytes does not fit one Noise message (%d) with its yamux header", k, noise.MaxPlaintextLength)
		}
	}
	if want := (size + chunk - 1) / chunk; len(s.writes) != want || want != 17 {
		t.Fatalf("%d writes, want %d (17)", len(s.writes), want)
	}
}
