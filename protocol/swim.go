package protocol

import (
	"fmt"
	"time"
)

// Failure detection (see the package doc, section Failure detection).
const (
	// PingProtocolID is the direct and indirect probe protocol: request
	// frames ([Ping]), each answered by one frame ([Ack]), in order.
	PingProtocolID = "/mirrornet/ping/2.0.0"
	// TopicSuspicion carries [Suspicion] statements: a mirror's signed
	// report that another did not answer its probes.
	TopicSuspicion = "/mirrornet/suspicion/1"
	// DomainSuspicion and PayloadSuspicion frame a suspicion envelope.
	DomainSuspicion  = "mirrornet-suspicion"
	PayloadSuspicion = "/mirrornet/suspicion/1"

	// MaxPingSize bounds a ping request or answer frame.
	MaxPingSize = 1 << 10
	// MaxLivenessTTL bounds the TTL a liveness statement may declare: a
	// mirror signs a fresh statement at least this often. Two hours: at a
	// few refreshes a minute network-wide (the profiles' RefreshRate), a
	// network of a thousand mirrors refreshes each about once an hour for
	// its refresh traffic to stay flat, and a TTL covers two refresh gaps
	// (a receiver that misses one refresh still holds the mirror alive);
	// probes and suspicions, not TTLs, find crashes.
	MaxLivenessTTL = 2 * time.Hour
)

// Ping is the request of [PingProtocolID]. With Target empty it asks the
// responder to answer itself (a direct probe); with Target set it asks the
// responder to probe Target and say whether Target answered (an indirect
// probe, SWIM's ping-req).
type Ping struct {
	// Target is the peer ID to probe on the sender's behalf, or "".
	Target string `json:"target,omitempty"`
	// Suspect says whether the sender suspects the peer being probed, and
	// Seq is then the highest liveness sequence number the sender holds for
	// it: a mirror that learns it is suspected at a sequence not below its
	// latest signs a fresh liveness statement (a refutation). A probe of a
	// peer in good standing carries neither (the frame is "{}"); responders
	// read Seq only with Suspect.
	Seq     uint64 `json:"seq,omitempty"`
	Suspect bool   `json:"suspect,omitempty"`
}

// Ack is the answer of [PingProtocolID]. OK is true when the probed peer
// answered (always, for a direct probe). Seq is set only in answer to a
// direct probe with Suspect: the responder's latest liveness sequence
// number. Probers must not rely on it otherwise (earlier responders set it
// on every direct probe).
type Ack struct {
	OK  bool   `json:"ok"`
	Seq uint64 `json:"seq,omitempty"`
}

// Suspicion is a mirror's signed report "Subject did not answer my direct
// and indirect probes at Time, while its latest liveness statement I held
// was sequence Incarnation". It travels as a signed envelope (domain
// [DomainSuspicion], payload type [PayloadSuspicion]) on [TopicSuspicion].
// Only the subject can answer it: with a liveness statement whose Seq is
// above Incarnation, signed by the subject itself (a refutation).
type Suspicion struct {
	// Observer is the reporting mirror; it must be the signer.
	Observer string `json:"observer"`
	// Subject is the mirror that did not answer.
	Subject string `json:"subject"`
	// Incarnation is the subject's liveness sequence number the report is
	// about.
	Incarnation uint64 `json:"incarnation"`
	// Time is the signing time in Unix milliseconds.
	Time int64 `json:"time"`
}

// Validate checks the fields' shape (not signatures or time).
func (s *Suspicion) Validate() error {
	switch {
	case s.Observer == "":
		return fmt.Errorf("%w: observer is empty", ErrInvalid)
	case s.Subject == "":
		return fmt.Errorf("%w: subject is empty", ErrInvalid)
	case s.Subject == s.Observer:
		return fmt.Errorf("%w: a mirror cannot suspect itself", ErrInvalid)
	case s.Incarnation == 0:
		return fmt.Errorf("%w: incarnation is zero", ErrInvalid)
	case s.Time <= 0:
		return fmt.Errorf("%w: time is not positive", ErrInvalid)
	}
	for _, f := range []struct{ name, v string }{{"observer", s.Observer}, {"subject", s.Subject}} {
		if err := checkString(f.name, f.v); err != nil {
			return err
		}
	}
	return nil
}

// DecodeSuspicion decodes and validates a canonical suspicion payload.
func DecodeSuspicion(data []byte) (*Suspicion, error) {
	var s Suspicion
	if err := DecodeCanonical(data, &s); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}
