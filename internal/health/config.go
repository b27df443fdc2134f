package health

import (
	"errors"
	"fmt"
	"time"

	"github.com/mirrornet/mirrornet/protocol"
)

// Errors returned by configuration checks.
var (
	ErrConfig         = errors.New("health: invalid config")
	ErrUnknownProfile = errors.New("health: unknown profile")
)

// Config sets how old a mirror's latest liveness statement may grow before
// the view calls it suspect, dead, and finally forgets it. Ages are measured
// from the statement's own signed time.
type Config struct {
	// SuspectAfter: no statement for this long and the mirror is suspect
	// (still listed, no longer preferred). A few heartbeats, so that one
	// lost message does not mark a healthy mirror.
	SuspectAfter time.Duration
	// DeadAfter is the statement's time to live: after it the mirror is
	// dead and no longer offered as a holder. It must exceed SuspectAfter.
	DeadAfter time.Duration
	// ForgetAfter drops a dead or left mirror this long after it became
	// dead or left, so the view does not grow without bound. 0 keeps it.
	ForgetAfter time.Duration
	// SuspicionTimeout is how long a suspicion (a failure detector's
	// signed report) stands unrefuted before the mirror is dead. 0 means
	// DeadAfter minus SuspectAfter: the same margin a silent mirror gets
	// between suspect and dead.
	SuspicionTimeout time.Duration
}

func (c Config) suspicionTimeout() time.Duration {
	if c.SuspicionTimeout > 0 {
		return c.SuspicionTimeout
	}
	return c.DeadAfter - c.SuspectAfter
}

// DefaultConfig is the "lan" profile's health config.
func DefaultConfig() Config { return lanProfile.Health }

// Validate reports the first field that is out of range.
func (c Config) Validate() error {
	switch {
	case c.SuspectAfter <= 0:
		return fmt.Errorf("%w: SuspectAfter must be positive (got %s)", ErrConfig, c.SuspectAfter)
	case c.DeadAfter <= c.SuspectAfter:
		return fmt.Errorf("%w: DeadAfter (%s) must exceed SuspectAfter (%s)", ErrConfig, c.DeadAfter, c.SuspectAfter)
	case c.ForgetAfter < 0:
		return fmt.Errorf("%w: ForgetAfter must not be negative (got %s)", ErrConfig, c.ForgetAfter)
	case c.SuspicionTimeout < 0:
		return fmt.Errorf("%w: SuspicionTimeout must not be negative (got %s)", ErrConfig, c.SuspicionTimeout)
	}
	return nil
}

// Profile bundles the timing a node uses for one kind of network, in the
// spirit of memberlist's DefaultLocalConfig/DefaultLANConfig/DefaultWANConfig.
type Profile struct {
	// Name is "local", "lan" or "wan".
	Name string
	// Heartbeat is how often the node publishes its liveness statement.
	Heartbeat time.Duration
	// Health is the view's timing; SuspectAfter and DeadAfter are whole
	// multiples of Heartbeat so that a few lost heartbeats are tolerated.
	Health Config
	// ProbeK is how many observers probe each mirror per epoch (used by
	// the retrieval-probe work).
	ProbeK int
	// RefreshMin is the shortest time between two of a mirror's liveness
	// statements when nothing in it changed. Between refreshes the failure
	// detector (direct and indirect probes every Heartbeat, suspicions
	// broadcast only when a probe fails) says who is alive.
	RefreshMin time.Duration
	// RefreshRate is how many refreshes per second the whole network
	// spends: a mirror that sees n mirrors refreshes every n/RefreshRate
	// (at least RefreshMin, at most about half protocol.MaxLivenessTTL),
	// so what each mirror receives of them stays about constant as the
	// network grows.
	RefreshRate float64
}

// RefreshInterval is about how long a mirror that sees n mirrors waits
// between two refreshes of its liveness statement (see RefreshSchedule).
// At most half of protocol.MaxLivenessTTL less a heartbeat: a statement's
// TTL covers two refresh gaps, so that a receiver that missed one refresh
// still holds the mirror alive.
func (p Profile) RefreshInterval(n int) time.Duration {
	d := p.RefreshMin
	if p.RefreshRate > 0 {
		d = max(d, time.Duration(float64(n)/p.RefreshRate*float64(time.Second)))
	}
	return min(max(d, 2*p.Heartbeat), (protocol.MaxLivenessTTL-p.Heartbeat)/2)
}

// Validate checks the health config and that the heartbeat fits in it.
func (p Profile) Validate() error {
	if p.Heartbeat <= 0 {
		return fmt.Errorf("%w: Heartbeat must be positive (got %s)", ErrConfig, p.Heartbeat)
	}
	if err := p.Health.Validate(); err != nil {
		return err
	}
	if p.Health.SuspectAfter < 2*p.Heartbeat {
		return fmt.Errorf("%w: SuspectAfter (%s) must be at least two heartbeats (%s)", ErrConfig, p.Health.SuspectAfter, p.Heartbeat)
	}
	if p.RefreshMin < 0 || p.RefreshRate < 0 {
		return fmt.Errorf("%w: RefreshMin and RefreshRate must not be negative (got %s, %g)", ErrConfig, p.RefreshMin, p.RefreshRate)
	}
	if p.ProbeK < 0 {
		return fmt.Errorf("%w: ProbeK must not be negative (got %d)", ErrConfig, p.ProbeK)
	}
	return nil
}

// The profiles. Dead is four heartbeats on local and LAN: a crash is known
// at most DeadAfter after the last heartbeat, i.e. under 4 s on a LAN
// (memberlist's LAN defaults take about 9 s at 50 nodes), while three
// consecutive heartbeats must be lost before a live mirror looks dead.
var (
	localProfile = Profile{
		Name:      "local",
		Heartbeat: 200 * time.Millisecond,
		// Loopback testnets: fast, and nothing is lost but to CPU starvation,
		// which SetLocalLag absorbs.
		Health:      Config{SuspectAfter: 600 * time.Millisecond, DeadAfter: time.Second, ForgetAfter: time.Minute, SuspicionTimeout: 1500 * time.Millisecond},
		ProbeK:      1,
		RefreshMin:  5 * time.Second,
		RefreshRate: 10,
	}
	lanProfile = Profile{
		Name:      "lan",
		Heartbeat: time.Second,
		// A suspicion stands 3 s: memberlist's LAN default waits
		// 4*log10(n+1) probe intervals (8 s at 100 mirrors), and a
		// refutation crosses a LAN in well under a second.
		Health:     Config{SuspectAfter: 2500 * time.Millisecond, DeadAfter: 4 * time.Second, ForgetAfter: 10 * time.Minute, SuspicionTimeout: 3 * time.Second},
		ProbeK:     3,
		RefreshMin: 30 * time.Second,
		// A refresh every 4 s network-wide: each costs every mirror about
		// 2 KB sent and received (gossipsub delivers a few copies), so
		// about 500 B/s each, whatever the network's size up to the
		// longest refresh interval (half protocol.MaxLivenessTTL, an
		// hour: 900 mirrors; above it the network refreshes more often).
		RefreshRate: 0.25,
	}
	wanProfile = Profile{
		Name:      "wan",
		Heartbeat: 5 * time.Second,
		// Six heartbeats: wide-area gossip loses and delays more.
		Health:      Config{SuspectAfter: 15 * time.Second, DeadAfter: 30 * time.Second, ForgetAfter: time.Hour, SuspicionTimeout: 15 * time.Second},
		ProbeK:      3,
		RefreshMin:  2 * time.Minute,
		RefreshRate: 0.25,
	}
)

// ProfileNames lists the known profiles.
func ProfileNames() []string { return []string{"local", "lan", "wan"} }

// ProfileByName returns the named profile: "local", "lan" or "wan".
func ProfileByName(name string) (Profile, error) {
	switch name {
	case "local":
		return localProfile, nil
	case "lan":
		return lanProfile, nil
	case "wan":
		return wanProfile, nil
	}
	return Profile{}, fmt.Errorf("%w %q (want local, lan or wan)", ErrUnknownProfile, name)
}
