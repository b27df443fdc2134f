package health

import (
	"errors"
	"fmt"
	"time"
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
		Health: Config{SuspectAfter: 600 * time.Millisecond, DeadAfter: time.Second, ForgetAfter: time.Minute},
		ProbeK: 1,
	}
	lanProfile = Profile{
		Name:      "lan",
		Heartbeat: time.Second,
		Health:    Config{SuspectAfter: 2500 * time.Millisecond, DeadAfter: 4 * time.Second, ForgetAfter: 10 * time.Minute},
		ProbeK:    3,
	}
	wanProfile = Profile{
		Name:      "wan",
		Heartbeat: 5 * time.Second,
		// Six heartbeats: wide-area gossip loses and delays more.
		Health: Config{SuspectAfter: 15 * time.Second, DeadAfter: 30 * time.Second, ForgetAfter: time.Hour},
		ProbeK: 3,
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
