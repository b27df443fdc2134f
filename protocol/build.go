package protocol

// BuildAttestation is a builder's signed claim "source Repo at Commit, built
// with Build, gives CID".
// (Placeholder shape; the release work defines validation.)
type BuildAttestation struct {
	Builder string `json:"builder"`
	Seq     uint64 `json:"seq"`
	Time    int64  `json:"time"`
	App     string `json:"app,omitempty"`
	Version uint64 `json:"version,omitempty"`
	Repo    string `json:"repo,omitempty"`
	Commit  string `json:"commit,omitempty"`
	Build   string `json:"build"`
	CID     string `json:"cid"`
}
