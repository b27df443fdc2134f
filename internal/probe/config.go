// Package probe decides, from public values only, who probes whom, and turns
// signed probe results into a verdict on each mirror: availability that is
// proven by retrieval rather than claimed.
//
// It is a pure core: it starts no goroutines, does no I/O and never reads
// the clock; callers pass now. [Observers] and [Assigned] compute the
// assignment anyone can check; [Evidence] collects verified probe statements
// (attest.Statement of kind probe) and answers [Evidence.Status]. The probe
// runner that performs challenges over HTTP lives in internal/probe/runner.
//
// Typical wiring: the gossip validator verifies a statement with
// attest.Verify and the sequence guard, then calls Evidence.Add(st, now);
// the health view, the badge handler and the client selection read
// Evidence.Status(target, now).
package probe

import (
	"errors"
	"fmt"
	"time"
)

// ErrConfig reports an invalid Config field.
var ErrConfig = errors.New("probe: invalid config")

// Config tunes assignment, challenges and verdicts. Every node of one
// network must agree on K, Observers and EpochLength, since they define the
// assignment everyone checks.
type Config struct {
	// K is how many observers in distinct failure domains must have passed
	// a target recently for it to count as verified.
	K int
	// Observers is how many observers are assigned to each target per
	// epoch: a small multiple of K, max(2K, 3), so that K independent
	// verdicts survive a few down or unlucky observers.
	Observers int
	// EpochLength is how long an assignment lasts. Long enough that every
	// observer probes its targets several times; short enough that no
	// observer keeps a target for long.
	EpochLength time.Duration
	// Interval is the time between two probes of the same target by the
	// same observer (one round).
	Interval time.Duration
	// Timeout is the deadline of one challenge (the whole DAG descent).
	Timeout time.Duration
	// Window is how far back results count for the current verdict.
	Window time.Duration
	// Confirmations is how many distinct failure domains must report
	// failures before a target is degraded or failing: one observer, or
	// one network, cannot take a mirror down.
	Confirmations int
	// MinSamples is the weighted number of recent results below which no
	// failure verdict is given (one lost packet is not a verdict).
	MinSamples float64
	// DegradedRate and FailingRate are the weighted failure fractions at or
	// above which a target is degraded or failing (given significance, see
	// Evidence.Status).
	DegradedRate float64
	FailingRate  float64
}

// Profile names.
const (
	ProfileLocal = "local"
	ProfileLAN   = "lan"
	ProfileWAN   = "wan"
)

// DefaultConfig is the lan profile.
func DefaultConfig() Config {
	return Config{
		K:             3,               // three independent witnesses, as the field recommends for committees
		Observers:     6,               // max(2K, 3)
		EpochLength:   5 * time.Minute, // 10 rounds per assignment
		Interval:      30 * time.Second,
		Timeout:       5 * time.Second, // a few small blocks over a LAN
		Window:        10 * time.Minute,
		Confirmations: 2,
		MinSamples:    10, // about two rounds of six observers
		DegradedRate:  1.0 / 3,
		FailingRate:   2.0 / 3,
	}
}

// ProfileConfig returns the config of a named profile: local (one machine,
// k = 1), lan or wan (k = 3).
func ProfileConfig(name string) (Config, error) {
	c := DefaultConfig()
	switch name {
	case ProfileLAN, "":
	case ProfileLocal:
		// Every mirror on one host shares one failure domain.
		c.K, c.Observers, c.Confirmations = 1, 3, 1
		c.EpochLength, c.Interval, c.Timeout, c.Window = 20*time.Second, 2*time.Second, 2*time.Second, time.Minute
		c.MinSamples = 4
	case ProfileWAN:
		c.EpochLength, c.Interval, c.Timeout, c.Window = 10*time.Minute, time.Minute, 15*time.Second, 20*time.Minute
	default:
		return Config{}, fmt.Errorf("%w: unknown profile %q (want local, lan or wan)", ErrConfig, name)
	}
	return c, nil
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.K < 1:
		return fmt.Errorf("%w: K must be at least 1", ErrConfig)
	case c.Observers < c.K:
		return fmt.Errorf("%w: Observers (%d) must be at least K (%d)", ErrConfig, c.Observers, c.K)
	case c.EpochLength < time.Millisecond:
		return fmt.Errorf("%w: EpochLength must be at least 1ms", ErrConfig)
	case c.Interval <= 0:
		return fmt.Errorf("%w: Interval must be positive", ErrConfig)
	case c.Timeout <= 0 || c.Timeout > c.Interval:
		return fmt.Errorf("%w: Timeout must be positive and at most Interval", ErrConfig)
	case c.Window < c.Interval:
		return fmt.Errorf("%w: Window must be at least Interval", ErrConfig)
	case c.Confirmations < 1:
		return fmt.Errorf("%w: Confirmations must be at least 1", ErrConfig)
	case c.MinSamples < 1:
		return fmt.Errorf("%w: MinSamples must be at least 1", ErrConfig)
	case !(c.DegradedRate > 0 && c.DegradedRate <= c.FailingRate && c.FailingRate <= 1):
		return fmt.Errorf("%w: want 0 < DegradedRate <= FailingRate <= 1", ErrConfig)
	}
	return nil
}
