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
// Gossipsub messages carry no gossipsub-level signature, author or sequence
// number (signature policy StrictNoSign; a signed message is dropped): the
// statement inside is signed already. The gossipsub message ID is the
// SHA-256 of the message data, so one signed statement forwarded by many
// peers is one message; messages are at most
// [MaxStatementSize] plus 4 KiB of gossipsub framing. Mirrors publish to all
// their peers (flood publish) and forward along the mesh (gossipsub v1.1
// defaults: D=6, Dlo=5, Dhi=12, 1 s heartbeat).
//
// # HTTP bootstrap
//
// A mirror can be joined through its HTTP URL alone: GET [HTTPStatusPath]
// answers JSON whose "self" object holds "peer_id" and "addrs" (multiaddrs
// ending in /p2p/PEER-ID). The answer is a hint for dialling, never trusted:
// the libp2p handshake proves the peer ID.
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
// # Probes
//
// Availability is proven by retrieval, not claimed. Time is cut into epochs,
// epoch = floor(unix milliseconds / epoch length) (the epoch length is part of
// the network's profile: 20 s local, 5 min lan, 10 min wan). For each target
// mirror, its observers in an epoch are the n alive mirrors other than the
// target with the lowest
//
//	SHA-256("mirrornet-probe-assign/1" || uint64be(epoch) ||
//	        uvarint(len(target)) || target || uvarint(len(observer)) || observer)
//
// where target and observer are binary peer IDs; ties go to the smaller
// binary peer ID. n is max(2k, 3) where k is the number of independent
// observers a verdict needs (1 local, 3 lan and wan). Everyone can recompute
// the assignment; results from unassigned observers are dropped.
//
// An assigned observer picks a bundle the target listed in its own liveness
// statement and draws a fresh 16-byte nonce from its cryptographic random
// source. It then descends the bundle's DAG from the root over the target's
// trustless gateway (GET {http}/ipfs/{cid}?format=raw), verifying every block
// against its CID, all under one deadline. Every choice comes from the nonce,
// so anyone holding the DAG can replay the challenge: choice(d, level, n) is
// the first 8 bytes, big-endian, of SHA-256(nonce || "mirrornet-descent" ||
// uint8(d) || int64be(level)) modulo n. The bundle is the choice(0, -1, n)th
// of the target's sorted list; descent d (0, 1, ...; two by default) takes
// link choice(d, level, n) of each dag-pb node until it reaches a raw block
// or a node without links (at most 32 levels). It signs a [ProbeResult]
// naming the challenge ("descent:<nonce>:<path>,<path>"), the
// [OutcomePass], [OutcomeFail] or [OutcomeTimeout] outcome and the latency,
// and publishes it on [TopicProbe]. Probe results are signed envelopes of the
// probe kind; their maximum age on gossip is [MaxProbeAge]. The signer must be
// the Observer.
//
// A receiver counts a target as verified when recent passing results come
// from assigned observers in at least k distinct failure domains (observers
// sharing an IPv4 /24, IPv6 /48, ASN or operator label count once), and as
// degraded or failing only when failures are confirmed from at least two
// domains. An observer whose probes fail against nearly every target is
// presumed sick (Lifeguard) and its verdicts are down-weighted.
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
//
// # Releases
//
// An app is its maintainers: a [MaintainerSet] of Ed25519 keys (written as
// peer IDs) and a threshold. Its ID is [DeriveAppID] of its name and first
// (genesis) set, so it survives maintainer rotations and lets a client that
// knows only the ID check the first record of the chain. A [Release] record
// (canonical JSON) names the app, a version (1, 2, ...), the bundle CID, the
// source (repo, commit, build command), its signing time and expiry (Unix
// ms), and the maintainer set from this version on; a rotation also names
// the set it replaces in Previous.
//
// A [SignedRelease] carries the record's exact bytes and signatures, each
// over varint(len(d)) || d || varint(len(t)) || t || varint(len(r)) || r with
// d = [DomainRelease], t = [PayloadRelease], r the record bytes. It is
// gossiped on [TopicRelease] as is (at most [MaxStatementSize] bytes, at most
// [MaxReleaseSignatures] signatures), and travels in sync responses and the
// HTTP statements stream next to envelopes ([IsSignedRelease] tells them
// apart). A receiver applies TUF's rules:
//
//   - threshold: at least Threshold distinct keys of the record's set signed;
//     a key that signs twice counts once; a signature that does not verify,
//     or by a key outside the record's sets, rejects the record;
//   - rollback: a version not above the highest one accepted for the app is
//     refused, even when the accepted one has expired;
//   - freeze: past Expires a record is stale: still kept (it blocks
//     rollbacks and anchors the chain) but never reported as current;
//   - rotation: a record whose set differs from the current one must name
//     the current set as Previous and carry the thresholds of both sets;
//   - anchor: the first record a receiver accepts for an app must be signed
//     by the genesis set (the set the app ID commits to, as Maintainers or,
//     for the first rotation, as Previous).
//
// Gossip verdicts: bad encoding, bad signature or a missing threshold is
// Reject; expired, rolled back, duplicate, or not yet anchored is Ignore.
//
// A [BuildAttestation] (envelope kind "build") is a builder's claim that a
// source commit built with a command gives a CID. A release is "verified"
// when independent builders (keys outside the maintainer sets) attest its
// CID for its app and version, and "diverges" when any builder attests a
// different CID for them.
package protocol
