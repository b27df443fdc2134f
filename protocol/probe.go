package protocol

// ProbeResult is an observer's signed verdict on one retrieval challenge:
// "observer Observer, assigned to probe Target in Epoch, asked for Challenge
// of Bundle and got Outcome after LatencyMS".
// (Placeholder shape; the probe work defines validation.)
type ProbeResult struct {
	Observer  string `json:"observer"`
	Target    string `json:"target"`
	Epoch     uint64 `json:"epoch"`
	Seq       uint64 `json:"seq"`
	Time      int64  `json:"time"`
	Bundle    string `json:"bundle"`
	Challenge string `json:"challenge"`
	Outcome   string `json:"outcome"`
	LatencyMS int64  `json:"latency_ms"`
}
