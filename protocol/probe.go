package protocol

import (
	"fmt"
	"strings"
)

// Probe outcomes.
const (
	// OutcomePass: every block of the challenge arrived within the deadline
	// and hashed to its CID.
	OutcomePass = "pass"
	// OutcomeFail: the target answered, but with an error status, a block
	// whose bytes do not match its CID, or a node that does not decode.
	OutcomeFail = "fail"
	// OutcomeTimeout: the challenge did not complete within the deadline.
	OutcomeTimeout = "timeout"
)

// ChallengeDescent is the prefix of a random-descent challenge:
//
//	descent:<nonce>:<path>[,<path>...]
//
// nonce is 32 lowercase hex digits (16 bytes from the observer's
// cryptographic random source, drawn at probe time), and each path is the
// child index chosen at each level of one descent from the root,
// dot-separated ("" when the root is a leaf), e.g.
// "descent:9f1c...e0:3.0.17,5.1.2" for two descents. At most
// [MaxChallengeDescents] descents.
const ChallengeDescent = "descent"

// MaxChallengeDescents bounds the descents of one challenge.
const MaxChallengeDescents = 8

// MaxProbeLatency bounds LatencyMS: no challenge deadline is longer.
const MaxProbeLatency = 10 * 60 * 1000

// ProbeResult is an observer's signed verdict on one retrieval challenge:
// "observer Observer, assigned to probe Target in Epoch, asked for Challenge
// of Bundle and got Outcome after LatencyMS". The subject (signer) is
// Observer.
type ProbeResult struct {
	// Observer is the subject: the probing mirror's peer ID. It must be
	// the signer.
	Observer string `json:"observer"`
	// Target is the probed mirror's peer ID; never the observer.
	Target string `json:"target"`
	// Epoch is floor(Time / epoch length) under the network's profile;
	// it selects the observers assigned to Target (see "Probes").
	Epoch uint64 `json:"epoch"`
	// Seq rises with every probe result the observer signs.
	Seq uint64 `json:"seq"`
	// Time is the probe's start in Unix milliseconds.
	Time int64 `json:"time"`
	// Bundle is the root CID (string form) challenged; the target must
	// have listed it in its own liveness statement.
	Bundle string `json:"bundle"`
	// Challenge records what was asked, with the observer's randomness
	// (see ChallengeDescent).
	Challenge string `json:"challenge"`
	// Outcome is OutcomePass, OutcomeFail or OutcomeTimeout.
	Outcome string `json:"outcome"`
	// LatencyMS is the challenge's wall time in milliseconds.
	LatencyMS int64 `json:"latency_ms"`
}

// Validate checks the fields' shape (not signatures, time or assignment).
func (p *ProbeResult) Validate() error {
	if p.Observer == "" {
		return fmt.Errorf("%w: observer is empty", ErrInvalid)
	}
	if p.Target == "" {
		return fmt.Errorf("%w: target is empty", ErrInvalid)
	}
	if p.Observer == p.Target {
		return fmt.Errorf("%w: observer probes itself", ErrInvalid)
	}
	if p.Seq == 0 {
		return fmt.Errorf("%w: seq is zero", ErrInvalid)
	}
	if p.Time <= 0 {
		return fmt.Errorf("%w: time is not positive", ErrInvalid)
	}
	for _, f := range []struct{ name, v string }{
		{"observer", p.Observer}, {"target", p.Target}, {"bundle", p.Bundle}, {"challenge", p.Challenge},
	} {
		if err := checkString(f.name, f.v); err != nil {
			return err
		}
		if strings.ContainsFunc(f.v, func(r rune) bool { return r <= ' ' || r > '~' }) {
			return fmt.Errorf("%w: %s has a space, control or non-ASCII character", ErrInvalid, f.name)
		}
	}
	if p.Bundle == "" {
		return fmt.Errorf("%w: bundle is empty", ErrInvalid)
	}
	if err := checkChallenge(p.Challenge); err != nil {
		return err
	}
	switch p.Outcome {
	case OutcomePass, OutcomeFail, OutcomeTimeout:
	default:
		return fmt.Errorf("%w: outcome %q", ErrInvalid, p.Outcome)
	}
	if p.LatencyMS < 0 || p.LatencyMS > MaxProbeLatency {
		return fmt.Errorf("%w: latency_ms %d outside [0, %d]", ErrInvalid, p.LatencyMS, MaxProbeLatency)
	}
	return nil
}

func checkChallenge(c string) error {
	kind, rest, ok := strings.Cut(c, ":")
	if !ok || kind != ChallengeDescent {
		return fmt.Errorf("%w: challenge %q is not %s:<nonce>:<path>", ErrInvalid, c, ChallengeDescent)
	}
	nonce, path, ok := strings.Cut(rest, ":")
	if !ok || len(nonce) != 32 || strings.ContainsFunc(nonce, func(r rune) bool {
		return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f')
	}) {
		return fmt.Errorf("%w: challenge nonce must be 32 lowercase hex digits", ErrInvalid)
	}
	paths := strings.Split(path, ",")
	if len(paths) > MaxChallengeDescents {
		return fmt.Errorf("%w: challenge has %d descents (limit %d)", ErrInvalid, len(paths), MaxChallengeDescents)
	}
	for _, p := range paths {
		if p == "" {
			continue
		}
		for _, step := range strings.Split(p, ".") {
			if step == "" || len(step) > 5 || (len(step) > 1 && step[0] == '0') ||
				strings.ContainsFunc(step, func(r rune) bool { return r < '0' || r > '9' }) {
				return fmt.Errorf("%w: challenge path step %q", ErrInvalid, step)
			}
		}
	}
	return nil
}

// DecodeProbeResult decodes and validates a canonical probe-result payload.
func DecodeProbeResult(data []byte) (*ProbeResult, error) {
	var p ProbeResult
	if err := DecodeCanonical(data, &p); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}
