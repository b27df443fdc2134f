package health_test

import (
	"errors"
	"testing"
	"time"

	"github.com/mirrornet/mirrornet/attest"
	"github.com/mirrornet/mirrornet/internal/health"
	"github.com/mirrornet/mirrornet/protocol"
)

// signTTL returns a verified liveness statement of s that promises the
// next one within ttl.
func (s signer) signTTL(t testing.TB, seq uint64, at time.Time, ttl time.Duration) *attest.Statement {
	t.Helper()
	raw, err := attest.SignLiveness(s.key, protocol.Liveness{
		Peer: s.id.String(), State: protocol.StateUp, Seq: seq, Time: at.UnixMilli(), TTL: ttl.Milliseconds(),
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := attest.Verify(raw, at)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// suspicion returns a verified suspicion of observer about subject's
// incarnation.
func suspicion(t testing.TB, observer, subject signer, inc uint64, at time.Time) *attest.Statement {
	t.Helper()
	raw, err := attest.SignSuspicion(observer.key, protocol.Suspicion{
		Observer: observer.id.String(), Subject: subject.id.String(), Incarnation: inc, Time: at.UnixMilli(),
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := attest.Verify(raw, at)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

var suspCfg = health.Config{SuspectAfter: 2 * time.Second, DeadAfter: 4 * time.Second, ForgetAfter: time.Minute, SuspicionTimeout: 3 * time.Second}

// A statement with a TTL keeps its mirror alive until TTL plus
// SuspectAfter, without any newer statement.
func TestTTLStretchesLiveness(t *testing.T) {
	v := health.New(suspCfg)
	m := newSigner(t, 1)
	v.Apply(m.signTTL(t, 1, t0, 30*time.Second), t0)
	for _, c := range []struct {
		at   time.Duration
		want health.State
	}{{29 * time.Second, health.StateAlive}, {31 * time.Second, health.StateAlive}, {32 * time.Second, health.StateSuspect}, {34 * time.Second, health.StateDead}} {
		if got := stateAt(t, v, m.id, t0.Add(c.at)); got != c.want {
			t.Errorf("at %s: %s, want %s", c.at, got, c.want)
		}
	}
}

// A suspicion makes its subject suspect at once and dead once it has
// stood SuspicionTimeout (and the statement is DeadAfter old); the
// subject's own newer statement refutes it.
func TestSuspicionThenDeadUnlessRefuted(t *testing.T) {
	v := health.New(suspCfg)
	m, o := newSigner(t, 1), newSigner(t, 2)
	v.Apply(m.signTTL(t, 1, t0, time.Minute), t0)
	v.Apply(o.signTTL(t, 1, t0, time.Minute), t0)
	at := t0.Add(10 * time.Second)
	if changed, err := v.AddSuspicion(suspicion(t, o, m, 1, at), at); !changed || err != nil {
		t.Fatalf("AddSuspicion = %v, %v", changed, err)
	}
	if got := stateAt(t, v, m.id, at); got != health.StateSuspect {
		t.Fatalf("right after the suspicion: %s", got)
	}
	if got := stateAt(t, v, m.id, at.Add(2999*time.Millisecond)); got != health.StateSuspect {
		t.Fatalf("before SuspicionTimeout: %s", got)
	}
	if got := stateAt(t, v, m.id, at.Add(3*time.Second)); got != health.StateDead {
		t.Fatalf("after SuspicionTimeout: %s", got)
	}
	if _, ok := v.Suspicion(m.id); !ok {
		t.Fatal("no standing suspicion")
	}
	// Sync hands the suspicion on with the statements.
	if n := len(v.Statements()); n != 3 {
		t.Errorf("Statements has %d entries, want 2 statements and 1 suspicion", n)
	}
	// The refutation: the subject's own newer statement.
	v.Apply(m.signTTL(t, 2, at.Add(time.Second), time.Minute), at.Add(time.Second))
	if got := stateAt(t, v, m.id, at.Add(5*time.Second)); got != health.StateAlive {
		t.Fatalf("after the refutation: %s", got)
	}
	if _, ok := v.Suspicion(m.id); ok {
		t.Fatal("suspicion still stands after the refutation")
	}
	// The refuted suspicion cannot come back.
	if _, err := v.AddSuspicion(suspicion(t, o, m, 1, at), at.Add(2*time.Second)); !errors.Is(err, health.ErrStaleSuspicion) {
		t.Fatalf("stale suspicion: %v", err)
	}
}

// A mirror is never declared dead sooner than DeadAfter after its last
// signed statement, however early a suspicion came.
func TestSuspicionNeverBeatsDeadAfter(t *testing.T) {
	v := health.New(suspCfg)
	m, o := newSigner(t, 1), newSigner(t, 2)
	v.Apply(m.signTTL(t, 1, t0, time.Minute), t0)
	if _, err := v.AddSuspicion(suspicion(t, o, m, 1, t0), t0); err != nil {
		t.Fatal(err)
	}
	if got := stateAt(t, v, m.id, t0.Add(3500*time.Millisecond)); got != health.StateSuspect {
		t.Fatalf("3.5 s after the last statement: %s", got)
	}
	if got := stateAt(t, v, m.id, t0.Add(4*time.Second)); got != health.StateDead {
		t.Fatalf("DeadAfter after the last statement: %s", got)
	}
}

// Suspicions about unknown mirrors are refused; of several about one
// incarnation the earliest stands, whatever order they arrive in, so views
// agree.
func TestSuspicionOrderIndependent(t *testing.T) {
	m, a, b := newSigner(t, 1), newSigner(t, 2), newSigner(t, 3)
	early, late := suspicion(t, a, m, 1, t0.Add(time.Second)), suspicion(t, b, m, 1, t0.Add(2*time.Second))
	deadAt := func(first, second *attest.Statement) time.Duration {
		v := health.New(suspCfg)
		if _, err := v.AddSuspicion(first, t0); !errors.Is(err, health.ErrUnknownSubject) {
			t.Fatalf("suspicion about an unknown mirror: %v", err)
		}
		v.Apply(m.signTTL(t, 1, t0, time.Minute), t0)
		v.AddSuspicion(first, t0.Add(2*time.Second))
		v.AddSuspicion(second, t0.Add(2*time.Second))
		for d := time.Duration(0); d < time.Minute; d += 100 * time.Millisecond {
			if stateAt(t, v, m.id, t0.Add(d)) == health.StateDead {
				return d
			}
		}
		return -1
	}
	if x, y := deadAt(early, late), deadAt(late, early); x != y || x != 4*time.Second {
		t.Fatalf("dead at %s and %s depending on order, want 4s both", x, y)
	}
}
