// Package protocol is the mirrornet wire protocol: every protocol ID, topic,
// statement format and size limit a compatible peer needs. It is a leaf: it
// imports only the standard library, so a newcomer can read this package alone
// and write a peer that interoperates.
//
// # Transport
//
// Mirrors are libp2p hosts (TCP and QUIC, Noise/TLS, yamux) identified by an
// Ed25519 peer ID. Wide-area peer routing uses a Kademlia DHT whose protocol
// IDs carry the prefix [DHTPrefix] ("/mirrornet/kad/1.0.0"), so mirrornet's DHT
// is separate from the public IPFS DHT. Bundles travel as IPFS blocks over
// bitswap and over the trustless HTTP gateway (ipfs/specs
// http-gateways/trustless-gateway.md), so stock IPFS tools interoperate.
//
// # Signed statements
//
// Everything a mirror asserts travels as a libp2p signed envelope
// (go-libp2p core/record, RFC 0002): a protobuf holding the signer's public
// key, a payload type, the payload and a signature over
//
//	varint(len(domain)) || domain || varint(len(type)) || type || varint(len(payload)) || payload
//
// The domain separates statement kinds, so a signature made for one kind can
// never be replayed as another:
//
//	kind        domain                     payload type                 payload
//	liveness    "mirrornet-liveness"       "/mirrornet/liveness/1"      [Liveness]
//	probe       "mirrornet-probe"          "/mirrornet/probe/1"         [ProbeResult]
//	build       "mirrornet-build"          "/mirrornet/build/1"         [BuildAttestation]
//
// Payloads are canonical JSON: exactly the bytes Go's encoding/json produces
// for the structs in this package (fields in declaration order, no
// insignificant white space, HTML-safe escaping, omitted fields as tagged).
// A receiver decodes strictly (unknown fields are an error) and re-encodes; if
// the bytes differ the payload is non-canonical and the statement is rejected.
// Each payload names its subject (the peer it speaks for); the subject must be
// the peer ID of the envelope's key.
//
// Release records (see [Release]) have several signers, so they are not
// envelopes: see [SignedRelease].
//
// # Validation (gossip)
//
// A receiver maps each failure to a gossipsub verdict:
//
//   - Reject (the forwarding peer is penalised): oversize (> [MaxStatementSize]),
//     malformed envelope, bad signature, wrong domain or payload type,
//     non-canonical or invalid payload, subject not the signer.
//   - Ignore (no penalty): a time more than [MaxClockDisparity] in the future,
//     older than the kind's maximum age ([MaxLivenessAge]), or a sequence number
//     not above the last one accepted from that signer. Sequence numbers give
//     replay protection that outlives gossipsub's 120 s seen-message cache.
//
// # Topics
//
// [TopicLiveness] carries liveness statements, [TopicProbe] probe results,
// [TopicRelease] release records and [TopicBuild] build attestations.
//
// # Liveness
//
// Every heartbeat a mirror publishes a [Liveness] with a sequence number one
// higher than the last (sequence numbers start from the signing time in
// milliseconds, so they keep rising across restarts). State "up" says the
// mirror serves; state "leaving" is its last word before a graceful stop.
// Receivers keep the latest statement per mirror and derive a state from its
// age: alive, suspect, dead; or left after a leaving statement.
//
// # Sync ([SyncProtocolID])
//
// A node that joins late opens a stream with [SyncProtocolID] and writes one
// frame holding a [SyncRequest]. The responder writes one frame per signed
// statement it holds (at most [MaxSyncStatements]) and an empty frame to end.
// A frame is a uvarint length followed by that many bytes, at most
// [MaxStatementSize]; see [WriteFrame] and [ReadFrame]. The receiver verifies
// every statement itself, exactly as if it had come over gossip.
//
// The same framed stream is served over HTTP at [HTTPStatementsPath] with
// content type [StatementsContentType], for light clients that do not run
// libp2p.
package protocol
