package netsim

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

var (
	ipA = netip.MustParseAddr("10.0.0.1")
	ipB = netip.MustParseAddr("10.0.0.2")
	apB = netip.AddrPortFrom(ipB, 4001)
)

// pair dials A → B and returns both ends.
func pair(t *testing.T, n *Network) (*Conn, *Conn) {
	t.Helper()
	l, err := n.Listen(apB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	a, err := n.Dial(context.Background(), ipA, apB)
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AcceptConn()
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func TestStreamLatencyOrderAndCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, _ := New(Config{Latency: 10 * time.Millisecond})
		start := time.Now()
		a, b := pair(t, n)
		if d := time.Since(start); d != 20*time.Millisecond {
			t.Fatalf("dial took %v, want one round trip (20ms)", d)
		}
		sent := time.Now()
		a.Write([]byte("hello "))
		a.Write([]byte("world"))
		a.Close()
		got, err := io.ReadAll(b)
		if err != nil || string(got) != "hello world" {
			t.Fatalf("read %q, %v", got, err)
		}
		if d := time.Since(sent); d != 10*time.Millisecond {
			t.Fatalf("delivered after %v, want 10ms", d)
		}
		if s, r := n.Meter(ipA).SentBytes.Load(), n.Meter(ipB).RecvBytes.Load(); s != 11 || r != 11 {
			t.Fatalf("sent %d, received %d, want 11 and 11", s, r)
		}
	})
}

func TestStreamLossRetransmits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Loss 0.5 with a fixed seed: some of 100 one-segment writes are
		// lost, each delays delivery by the RTO and counts its bytes twice.
		n, _ := New(Config{Latency: 10 * time.Millisecond, Loss: 0.5, Seed: 1})
		a, b := pair(t, n)
		sent := time.Now()
		for range 100 {
			a.Write([]byte{1})
		}
		a.Close()
		got, _ := io.ReadAll(b)
		lost := n.Meter(ipA).Lost.Load()
		if len(got) != 100 || lost == 0 || lost == 100 {
			t.Fatalf("got %d bytes with %d lost segments", len(got), lost)
		}
		if s := n.Meter(ipA).SentBytes.Load(); s != 100+lost {
			t.Fatalf("sent %d bytes, want %d (lost ones twice)", s, 100+lost)
		}
		if d, want := time.Since(sent), 10*time.Millisecond+n.Config().RTO; d != want {
			// Sent at once, so the retransmissions overlap; what was behind a
			// lost segment waited for it (head-of-line blocking).
			t.Fatalf("all delivered after %v, want %v", d, want)
		}
	})
}

func TestPartitionHoldsThenHeals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, _ := New(Config{Latency: 10 * time.Millisecond})
		a, b := pair(t, n)
		n.Partition(func(ip netip.Addr) bool { return ip == ipA }, []netip.Addr{ipA, ipB})
		a.Write([]byte("x"))
		b.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := b.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read across a partition: %v, want a timeout", err)
		}
		b.SetReadDeadline(time.Time{})
		// Datagrams across the cut are dropped.
		var got atomic.Int64
		stop, _ := n.ListenPacket(apB, func(Datagram) { got.Add(1) })
		defer stop()
		n.SendPacket(netip.AddrPortFrom(ipA, 1), apB, []byte("p"))
		time.Sleep(time.Second)
		if got.Load() != 0 {
			t.Fatal("datagram crossed the partition")
		}
		n.Heal()
		healed := time.Now()
		if _, err := b.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(healed); d != 10*time.Millisecond {
			t.Fatalf("held data delivered %v after the heal, want 10ms", d)
		}
	})
}

func TestIsolatedSendsNoFIN(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, _ := New(Config{Latency: 10 * time.Millisecond})
		a, b := pair(t, n)
		n.Isolate(ipA)
		a.Write([]byte("x"))
		a.Close()
		b.SetReadDeadline(time.Now().Add(time.Minute))
		if _, err := b.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read from a crashed peer: %v, want nothing until the deadline", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := n.Dial(ctx, ipB, netip.AddrPortFrom(ipA, 1)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("dialled an isolated peer")
		}
	})
}

func TestDatagramLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, _ := New(Config{Latency: 5 * time.Millisecond, Loss: 0.01, Seed: 7})
		var got atomic.Int64
		stop, _ := n.ListenPacket(apB, func(Datagram) { got.Add(1) })
		defer stop()
		for range 10000 {
			n.SendPacket(netip.AddrPortFrom(ipA, 1), apB, []byte("p"))
		}
		time.Sleep(time.Second)
		lost := int(n.Meter(ipA).Lost.Load())
		if got := int(got.Load()); got+lost != 10000 || lost < 50 || lost > 150 {
			t.Fatalf("received %d, lost %d of 10000 at 1%%", got, lost)
		}
	})
}
