package yamux

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// countConn counts the bytes written to a connection.
type countConn struct {
	net.Conn
	written atomic.Int64
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written.Add(int64(n))
	return n, err
}

// TestIdleSessionsDoNotMeasureRTT: a session measures the round trip time
// once at the start, and again only after data flowed in: idle sessions
// send nothing, however many measurement intervals pass.
func TestIdleSessionsDoNotMeasureRTT(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		ca, cb := &countConn{Conn: a}, &countConn{Conn: b}
		cfg := DefaultConfig()
		cfg.LogOutput = io.Discard
		cfg.EnableKeepAlive = false
		cfg.MeasureRTTInterval = time.Second
		client, err := Client(ca, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		server, err := Server(cb, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		defer server.Close()
		synctest.Wait() // the first measurements
		// Sentinels: a new measurement changes them.
		atomic.StoreInt64(&client.rtt, int64(time.Hour))
		atomic.StoreInt64(&server.rtt, int64(time.Hour))
		wa, wb := ca.written.Load(), cb.written.Load()
		time.Sleep(10 * cfg.MeasureRTTInterval)
		synctest.Wait()
		if da, db := ca.written.Load()-wa, cb.written.Load()-wb; da != 0 || db != 0 {
			t.Fatalf("idle for 10 measurement intervals, the sessions wrote %d and %d bytes, want none", da, db)
		}

		// A bulk transfer to the server: the server measures again at its
		// next interval; the client, which received only window updates,
		// does not.
		cs, err := client.OpenStream(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		go func() { _, _ = cs.Write(make([]byte, 1<<20)); _ = cs.Close() }()
		ss, err := server.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, ss); err != nil {
			t.Fatal(err)
		}
		time.Sleep(cfg.MeasureRTTInterval)
		synctest.Wait()
		if server.RTT() == time.Hour {
			t.Error("the server received 1 MiB and did not measure the round trip time again")
		}
		if client.RTT() != time.Hour {
			t.Error("the client received no data and measured the round trip time again")
		}
	})
}
