package p2plimits

import (
	"fmt"
	"runtime"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
)

// Validation bounds the CPU that gossip validation (a signature check per
// statement) may take, so that a flood of valid statements from strangers
// cannot starve the rest of the mirror: its HTTP side, its probes, its own
// heartbeats.
//
// gossipsub runs topic validators on goroutines of their own by default, up
// to 1,024 per topic and 8,192 in all: under a flood every core verifies
// signatures, and a status request waits behind a run queue of a thousand
// verifiers. With Validation's options every topic validator runs inline,
// on a fixed pool of Workers goroutines fed by a queue of Queue messages:
// at most Workers cores verify at once, and what arrives while the queue
// is full is dropped before any work is spent on it (gossipsub counts it
// as "validation queue full"; an honest statement dropped there comes
// again by IHAVE/IWANT or the next sync, as after any loss).
type Validation struct {
	// Workers verify statements; the rest of the mirror keeps the other
	// cores. Default: GOMAXPROCS-1, at least 1 (two cores: one verifies,
	// one serves).
	Workers int
	// Queue is how many received messages wait for a worker. Default 256:
	// a burst of a heartbeat's statements from a few hundred mirrors,
	// 16 MiB at the statement size limit.
	Queue int
}

// DefaultValidation is the Validation documented on its fields, for this
// process's GOMAXPROCS.
func DefaultValidation() Validation {
	return Validation{Workers: max(1, runtime.GOMAXPROCS(0)-1), Queue: 256}
}

// Validate names the first field out of range.
func (v Validation) Validate() error {
	if v.Workers < 1 || v.Queue < 1 {
		return fmt.Errorf("%w: validation workers %d and queue %d must be positive", ErrConfig, v.Workers, v.Queue)
	}
	return nil
}

// PubSubOptions are the options of the gossipsub router.
func (v Validation) PubSubOptions() []pubsub.Option {
	return []pubsub.Option{pubsub.WithValidateWorkers(v.Workers), pubsub.WithValidateQueueSize(v.Queue)}
}

// ValidatorOptions are the options every topic validator is registered
// with.
func (v Validation) ValidatorOptions() []pubsub.ValidatorOpt {
	return []pubsub.ValidatorOpt{pubsub.WithValidatorInline(true)}
}
