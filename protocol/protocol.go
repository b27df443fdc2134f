package protocol

import "time"

// Protocol IDs and topic names. The trailing version changes when the wire
// format changes incompatibly.
const (
	// DHTPrefix is the Kademlia protocol prefix: the DHT speaks
	// DHTPrefix + "/kad/1.0.0".
	DHTPrefix = "/mirrornet"
	// SyncProtocolID is the request/response protocol that hands a peer
	// every signed statement the responder holds.
	SyncProtocolID = "/mirrornet/sync/2.0.0"
	// ProbeProtocolID is reserved for retrieval challenges carried over libp2p.
	ProbeProtocolID = "/mirrornet/probe/1.0.0"

	TopicLiveness = "/mirrornet/liveness/2"
	TopicProbe    = "/mirrornet/probe/2"
	TopicRelease  = "/mirrornet/release/1"
	TopicBuild    = "/mirrornet/build/1"

	// MDNSServiceName is the mDNS service tag mirrors advertise on a LAN.
	MDNSServiceName = "_mirrornet._udp"
)

// Envelope domains and payload types, one per statement kind.
const (
	DomainLiveness = "mirrornet-liveness"
	DomainProbe    = "mirrornet-probe"
	DomainBuild    = "mirrornet-build"
	DomainRelease  = "mirrornet-release"

	PayloadLiveness = "/mirrornet/liveness/2"
	PayloadProbe    = "/mirrornet/probe/2"
	PayloadBuild    = "/mirrornet/build/1"
)

// Size limits. Every read from the network is bounded by one of these.
const (
	// MaxStatementSize bounds one signed statement (envelope or signed
	// release) in bytes, on gossip, sync and HTTP alike.
	MaxStatementSize = 64 << 10
	// MaxGossipRPCSize bounds one gossipsub RPC frame, whatever it carries
	// (messages, control messages, subscriptions): a statement plus 4 KiB
	// of gossipsub framing.
	MaxGossipRPCSize = MaxStatementSize + 4<<10
	// MaxBundles bounds the bundles listed in one liveness statement.
	MaxBundles = 512
	// MaxAddrs bounds the addresses listed in one liveness statement.
	MaxAddrs = 32
	// MaxStringLen bounds any single string field (addresses, URLs,
	// versions, labels).
	MaxStringLen = 512
	// MaxSyncStatements bounds the statements in one sync response.
	MaxSyncStatements = 8192
	// MaxSyncRequestSize bounds the request frame of the sync protocol.
	MaxSyncRequestSize = 4 << 10
	// MaxMaintainers bounds the keys of one app.
	MaxMaintainers = 32
)

// Time rules.
const (
	// MaxClockDisparity is how far in the future a statement's time may be
	// and still be accepted (the receiver's clock may lag the signer's).
	MaxClockDisparity = 2 * time.Second
	// MaxLivenessAge is how old a liveness statement may be and still be
	// forwarded on gossip. Older ones are ignored on gossip (a late joiner
	// still learns them through sync, where they mark a dead mirror).
	MaxLivenessAge = 60 * time.Second
	// MaxProbeAge is how old a probe result may be and still be forwarded.
	MaxProbeAge = 5 * time.Minute
)

// HTTP paths served by every mirror on its public HTTP side.
const (
	// HTTPStatementsPath serves the framed stream of every signed
	// statement the mirror holds (the same bytes as a sync response).
	HTTPStatementsPath = "/mirrornet/v1/statements"
	// StatementsContentType is the media type of that stream.
	StatementsContentType = "application/vnd.mirrornet.statements"
	// HTTPStatusPath serves the node's unsigned status JSON (for people
	// and scripts; never trusted by other peers).
	HTTPStatusPath = "/api/v1/status"
)
