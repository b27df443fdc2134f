package protocol

import "fmt"

// BuildAttestation is a builder's signed claim "source Repo at Commit, built
// with Build, gives CID" (for release Version of App, when set). It travels
// as a signed envelope (domain [DomainBuild], payload type [PayloadBuild]) on
// [TopicBuild]. Several independent builders signing the same claim is what
// makes "commit Y builds to CID X" trustworthy.
type BuildAttestation struct {
	// Builder is the subject: the builder key's peer ID. It must be the
	// signer.
	Builder string `json:"builder"`
	// Seq rises with every attestation the builder signs (start from the
	// signing time in milliseconds); receivers ignore replays.
	Seq uint64 `json:"seq"`
	// Time is the signing time in Unix milliseconds.
	Time int64 `json:"time"`
	// App and Version name the release the build reproduces; both or
	// neither are set.
	App     string `json:"app,omitempty"`
	Version uint64 `json:"version,omitempty"`
	// Repo and Commit say which source was built; optional.
	Repo   string `json:"repo,omitempty"`
	Commit string `json:"commit,omitempty"`
	// Build is the build command, run with sh -c in a clean copy of the
	// source.
	Build string `json:"build"`
	// CID is the root CID the build produced.
	CID string `json:"cid"`
}

// Validate checks the fields' shape (not signatures or time).
func (b *BuildAttestation) Validate() error {
	if b.Builder == "" {
		return fmt.Errorf("%w: builder is empty", ErrInvalid)
	}
	if b.Seq == 0 {
		return fmt.Errorf("%w: seq is zero", ErrInvalid)
	}
	if b.Time <= 0 {
		return fmt.Errorf("%w: time is not positive", ErrInvalid)
	}
	if (b.App == "") != (b.Version == 0) {
		return fmt.Errorf("%w: app and version must be set together", ErrInvalid)
	}
	if b.App != "" && !IsAppID(b.App) {
		return fmt.Errorf("%w: app %q is not an app ID", ErrInvalid, b.App)
	}
	if b.Build == "" {
		return fmt.Errorf("%w: build is empty", ErrInvalid)
	}
	if b.CID == "" {
		return fmt.Errorf("%w: cid is empty", ErrInvalid)
	}
	for _, f := range []struct{ name, v string }{{"builder", b.Builder}, {"repo", b.Repo}, {"commit", b.Commit}, {"build", b.Build}, {"cid", b.CID}} {
		if err := checkString(f.name, f.v); err != nil {
			return err
		}
	}
	return nil
}

// DecodeBuildAttestation decodes and validates a canonical build
// attestation payload.
func DecodeBuildAttestation(data []byte) (*BuildAttestation, error) {
	var b BuildAttestation
	if err := DecodeCanonical(data, &b); err != nil {
		return nil, err
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return &b, nil
}
