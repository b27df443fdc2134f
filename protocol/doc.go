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
// # Versions
//
// Every protocol ID, topic and payload type ends in a version that changes
// whenever a peer of the previous version could not take part: its
// messages would be refused, or it would refuse ours. The current ones
// changed from version 1 as follows. Liveness ([PayloadLiveness],
// [TopicLiveness]: "/mirrornet/liveness/2"): a statement may name its
// holdings by digest only, with no Bundles list (version 1 required the
// list), and may declare a TTL up to [MaxLivenessTTL], two hours (version
// 1: ten minutes). Ping ([PingProtocolID]: "/mirrornet/ping/2.0.0"): a stream
// carries any number of requests (version 1 answered one and closed).
// Sync ([SyncProtocolID]: "/mirrornet/sync/2.0.0"): a response carries
// holdings statements, in frames up to [MaxHoldingsSize] bytes (version 1
// frames were at most [MaxStatementSize]).
//
// # Signed statements
//
// Everything a mirror asserts travels as a libp2p signed envelope
// (go-libp2p core/record, RFC 0002): a protobuf (proto3) message
//
//	message Envelope {
//	  PublicKey public_key   = 1; // the signer's key, see below
//	  bytes     payload_type = 2; // e.g. "/mirrornet/liveness/2"
//	  bytes     payload      = 3; // canonical JSON, see below
//	  bytes     signature    = 5; // 64-byte Ed25519 signature
//	}
//	message PublicKey {            // libp2p's crypto.pb.PublicKey (proto2)
//	  required KeyType type = 1;   // Ed25519 = 1; nothing else is accepted
//	  required bytes   data = 2;   // the 32-byte raw Ed25519 public key
//	}
//
// The signature field is number 5, as go-libp2p encodes it (RFC 0002's
// text says 4; go-libp2p, and so the wire, uses 5). The signature is
// Ed25519 (RFC 8032, pure) over the signing buffer
//
//	uvarint(len(domain)) || domain || uvarint(len(type)) || type || uvarint(len(payload)) || payload
//
// where uvarint is the unsigned LEB128 varint of protobuf and
// multiformats (Go's binary.AppendUvarint): 7 bits per byte, low bits
// first, high bit set on all but the last byte. It is not a signed
// (zigzag) varint. The domain is not on the wire: the receiver knows it
// from the payload type.
//
// Only Ed25519 keys are accepted (key type 1); a statement signed with any
// other libp2p key type (RSA, secp256k1, ECDSA) is rejected even when its
// signature verifies. The signer's peer ID is the libp2p peer ID of the
// key: the identity multihash (0x00, length) of the encoded PublicKey
// message (36 bytes: 08 01 12 20 followed by the key), in base58btc; such
// IDs begin "12D3KooW".
//
// The envelope must be canonically encoded: exactly the bytes of
//
//	0a len(pk) pk  12 len(type) type  1a len(payload) payload  2a 40 signature
//
// with pk = 08 01 12 20 key, lengths as uvarints, each field present once
// and in field-number order, no other fields. A receiver re-encodes what it
// decoded and rejects the statement if the bytes differ, so one statement
// has exactly one byte form (and one gossip message ID): an envelope whose
// fields are reordered, repeated or padded is rejected (and its sender
// penalised) even though its signature verifies.
//
// The domain separates statement kinds, so a signature made for one kind can
// never be replayed as another:
//
//	kind        domain                     payload type                 payload
//	liveness    "mirrornet-liveness"       "/mirrornet/liveness/2"      [Liveness]
//	suspicion   "mirrornet-suspicion"      "/mirrornet/suspicion/1"     [Suspicion]
//	holdings    "mirrornet-holdings"       "/mirrornet/holdings/1"      [Holdings]
//	probe       "mirrornet-probe"          "/mirrornet/probe/2"         [ProbeResult]
//	build       "mirrornet-build"          "/mirrornet/build/1"         [BuildAttestation]
//
// Payloads are canonical JSON: exactly the bytes Go's encoding/json produces
// for the structs in this package (fields in declaration order, no
// insignificant white space, HTML-safe escaping, omitted fields as tagged).
// A receiver decodes strictly (unknown fields are an error) and re-encodes; if
// the bytes differ the payload is non-canonical and the statement is rejected.
// Each payload names its subject (the peer it speaks for); the subject must be
// the peer ID of the envelope's key. HTML-safe escaping means <, > and & in
// strings are written \u003c, \u003e and \u0026; a peer in another
// language must escape them likewise (JavaScript's JSON.stringify does not).
//
// # Test vectors
//
// protocol/testdata/statements.json holds signed statements with the
// expected verdict of a receiver whose clock reads "now". Each vector gives
// the signer's key ("seed": the 32-byte RFC 8032 private key seed, hex;
// "public_key": the raw public key, hex; "peer_id"), the "domain",
// "payload_type" and "payload" (the JSON text), the "signing_buffer" and
// "signature" (hex), the whole "statement" as it travels (hex), "now" (Unix
// milliseconds), and "verdict" ("accept", "reject" or "ignore", as in
// Validation below) with go-libp2p mirrornet's "reason". They cover a valid
// statement, a flipped signature bit, reordered envelope fields, the
// signature in field 4, a zigzag-varint signing buffer, a wrong domain, an
// unknown payload type, a non-canonical payload, a subject that is not the
// signer, a secp256k1 key, statements from the future and too old, TTLs
// (30 s, exactly [MaxLivenessTTL] accepted, one millisecond above it
// rejected), and holdings: a statement naming them by digest only, one with neither a
// list nor a digest, and one whose list does not have its digest. A
// compatible peer gives the same verdict on every vector.
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
// [TopicLiveness] carries liveness statements, [TopicSuspicion]
// suspicions, [TopicProbe] probe results, [TopicRelease] release records
// and [TopicBuild] build attestations.
// The data of a gossipsub message is one signed statement (an envelope, or a
// [SignedRelease] on [TopicRelease]), nothing else.
//
// Gossipsub messages carry no gossipsub-level signature, key, author (from)
// or sequence number (seqno): signature policy StrictNoSign with no author
// (go-libp2p-pubsub: WithMessageSignaturePolicy(StrictNoSign) and
// WithNoAuthor(); js-libp2p: globalSignaturePolicy "StrictNoSign"). The
// statement inside is signed already. A message that carries any of these
// fields is rejected. The gossipsub message ID is the SHA-256 of the message
// data (the raw 32 bytes), so one signed statement forwarded by many peers
// is one message.
//
// Size limit: every gossipsub RPC a peer sends (one length-prefixed protobuf
// frame on the /meshsub stream), including RPCs that carry only control
// messages (IHAVE, IWANT, GRAFT, PRUNE, IDONTWANT) or subscriptions, must be
// at most [MaxGossipRPCSize] bytes ([MaxStatementSize] plus 4 KiB of
// framing). A receiver treats a longer frame as a broken stream: it resets
// the stream and drops the whole RPC, so a peer that sends, say, an IHAVE
// list over the limit is silently cut off from gossip. Split long control
// lists across RPCs (gossipsub's own limits, 5000 message IDs per IHAVE, are
// far below this).
//
// Mirrors publish to all their peers (flood publish) and forward along the
// mesh (gossipsub v1.1 defaults: D=6, Dlo=5, Dhi=12, 1 s heartbeat).
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
// A mirror publishes a [Liveness] whenever what it says changes (addresses,
// HTTP URL, holdings digest, version, state) and otherwise refreshes it before
// its TTL runs out, with a sequence number above the last (sequence numbers
// start from the signing time in milliseconds, so they keep rising across
// restarts). State "up" says the mirror serves; state "leaving" is its last
// word before a graceful stop.
//
// TTL (milliseconds, at most [MaxLivenessTTL]) is the signer's promise to
// sign again within it. mirrornet refreshes about every interval
// max(RefreshMin, n / RefreshRate) for the number of mirrors n it sees (30 s
// and one every 4 s on the lan profile; at most about half
// [MaxLivenessTTL]), so that the whole network signs about RefreshRate
// refreshes per second whatever its size, and what each mirror receives of
// them stays about constant. Gossip may fail to deliver a refresh to a
// receiver (one outside every mesh for a heartbeat, say), so the TTL covers
// two refresh gaps: the gap to the statement's own refresh plus an interval
// and a heartbeat, and the refresh after next comes at least a heartbeat
// before the TTL runs out. A receiver that missed one refresh holds the
// mirror alive until the next. A statement without TTL is a heartbeat
// statement (TTL 0).
//
// Receivers keep the latest statement per mirror and derive a state: alive;
// suspect once the statement is TTL plus SuspectAfter old, or a suspicion
// names its sequence number (see Failure detection); dead once it is TTL
// plus DeadAfter old, or once a suspicion has stood unrefuted for
// SuspicionTimeout and the statement is at least DeadAfter old; left after
// a leaving statement. (SuspectAfter, DeadAfter and SuspicionTimeout are
// the profile's: 2.5 s, 4 s and 3 s on lan.) A light client uses a mirror
// only while its statement is within TTL plus its own freshness bound.
//
// # Holdings
//
// What a mirror holds is not listed in every liveness statement: a mirror
// with a thousand bundles would make each refresh about 60 KB. Instead it
// signs a [Holdings] statement (the sorted list of root CIDs it holds
// complete and verified, at most [MaxHoldings], the envelope at most
// [MaxHoldingsSize] bytes) whenever the list changes, and its liveness
// statements carry only Holdings, the [HoldingsDigest] of that list (the
// sha2-256 multihash of uvarint(len(cid)) || cid over the sorted CIDs, in
// lowercase hex), and HoldingsCount, its length. A new list means a new
// digest, so the mirror publishes a fresh liveness statement at once.
//
// Older statements list the bundles inline in Bundles; receivers accept
// both forms. A statement may carry both (the digest must then be that of
// the list and the count its length); a statement with neither is invalid
// (Reject, reason "payload": [ErrNoHoldings]).
//
// A receiver that accepts a liveness statement whose digest it holds no
// holdings statement for pulls it: it opens a stream with
// [HoldingsProtocolID] to the peer that forwarded the statement, failing
// that to the subject, and writes one frame (see Sync) holding a
// [HoldingsRequest] (at most [MaxHoldingsWant] references, the frame at
// most [MaxHoldingsRequestSize] bytes). The responder writes one frame per
// requested holdings statement it holds (signed bytes, at most
// [MaxHoldingsSize] each) and an empty frame to end; it leaves out what it
// does not hold. The receiver verifies each one as any statement, and
// checks that it is signed by the peer it asked about and that its list
// has the digest asked for; anything else is refused (reason
// "holdings_mismatch") and changes nothing. Holdings statements have no
// maximum age: one is current for as long as the subject's current
// liveness statement names its digest. They never travel on gossip.
//
// Until a receiver holds the list a liveness statement names, it takes the
// mirror to hold nothing it does not know of (no redirects, no probes
// against it); the list normally arrives within one round trip.
//
// Cost bounds: a responder answers at most [MaxHoldingsWant] references
// per request and a few requests per second per peer (mirrornet: 2 per
// second, burst 8; at most 2 MiB of statements per answer); more are
// reset. A receiver keeps one holdings statement per mirror in its view,
// counted against the view's budget.
//
// A light client reads a mirror's holdings over HTTP: GET
// [HTTPHoldingsPath] on the mirror answers its own current holdings
// statement ([HoldingsContentType]); the client verifies it against the
// digest of the mirror's fresh liveness statement and keeps only the
// answer it needs (does the mirror hold this root).
//
// # Failure detection
//
// Between refreshes, probes show who is alive (after SWIM and memberlist).
// Time is cut into probe slots of one period (the profile's heartbeat, 1 s
// on lan), counted from the Unix epoch. A mirror's neighbours are the 8
// mirrors that follow it on a ring of the alive and suspect mirrors
// ordered by the SHA-256 of their peer IDs; at the start of slot s it
// probes the (s mod 8)-th of them (the (s mod n)-th with n < 8), so the 8
// mirrors that probe a mirror take turns and it is probed once in every
// slot while views and clocks agree. It sends the probe on a stream with
// [PingProtocolID]: one frame (see Sync for frames) holding a [Ping] in
// JSON, at most [MaxPingSize] bytes, answered by one frame holding an
// [Ack]. A stream carries any number of requests, answered in order; the
// responder closes a stream silent for a while. A prober keeps one stream
// per neighbour for its direct probes, and resets it when a probe fails
// (a late answer is never taken for the next probe's). A direct probe leaves
// Target empty. The probe of a mirror in good standing is the empty object
// "{}", answered by {"ok":true}: with framing, about 75 bytes on the wire
// per probe and answer. A probe of a suspected mirror carries Suspect and
// the sequence number the prober holds of it; a target that learns it is
// suspected at a sequence number not below its latest signs a fresh
// liveness statement at once, and its answer carries its own sequence
// number.
//
// When no answer comes within two fifths of the period, the prober asks
// three other mirrors, chosen at random, to probe the target for it (a
// [Ping] with Target set; the helper answers OK true if the target answered
// it), while trying the target once more directly. If nothing answers
// within half a period, the prober signs a [Suspicion] naming the target and
// the sequence number of the target's latest statement it holds
// (Incarnation), and publishes it on [TopicSuspicion]. A receiver that
// holds that statement marks the target suspect at once; per target it
// keeps the earliest suspicion of the highest incarnation, so views agree
// whatever order suspicions arrive in. A suspicion whose incarnation is
// below the target's latest statement is ignored (refuted), as is one about
// a mirror the receiver does not know. Only the subject can refute: with
// its own newer liveness statement, which every mirror checks is signed by
// the mirror it names. Suspicions age out like liveness statements
// ([MaxLivenessAge]) and are not sequence-guarded per signer.
//
// Cost bounds: a mirror answers at most two probes per period per peer
// (burst ten); more are reset without an answer, logged once a minute and
// counted. A mirror sends one direct probe per period, and at most four
// more only when a probe fails, so its probe traffic does not grow with the
// number of mirrors. In every fifth slot it also probes one mirror it
// believes dead (no suspicion follows), so the two sides of a healed
// partition find each other.
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
// the assignment.
//
// Committee: the same scores seat a committee for each target and epoch, one
// seat per failure domain among the alive mirrors (target excluded), held by
// that domain's member with the lowest score; the n domains whose holders
// score lowest are seated. A failure domain is where peers saw a mirror on
// real connections: its address's IPv4 /24 or IPv6 /48 (or ASN), from the
// receiver's own connections or from the Addr of probe results, the latter
// only when observers in two distinct, themselves observed, domains agree.
// Every mirror nobody observed is in the one domain "unknown". An observer
// probes the targets it is assigned and those whose committee it holds a seat
// of in its own view; a receiver counts a result only from an assigned
// observer or one in a domain seated in the receiver's view, and a domain
// speaks with one voice however many of its members report.
//
// Each epoch is cut into [ProbeRoundsPerEpoch] rounds, round = (unix ms mod
// epoch length) * 64 / epoch length. The nonce of the challenge an observer
// puts to a target in a round is not chosen by anyone: it is [ProbeNonce] of
// (epoch, round, target, observer), the first 16 bytes of
//
//	SHA-256("mirrornet-probe-nonce/1" || uint64be(epoch) || uint64be(round) ||
//	        uvarint(len(target)) || target || uvarint(len(observer)) || observer)
//
// with target and observer as peer ID strings. One nonce in [CanaryOneIn] is a
// canary ([IsCanary]): the observer asks the target for [CanaryCID], a block
// whose bytes nobody knows, and can honestly only report a failure; the
// result names the challenge "canary:<nonce>" and says nothing about the
// target. Otherwise the observer picks a bundle the target listed in its own
// liveness statement and descends the bundle's DAG from the root over the
// target's trustless gateway (GET {http}/ipfs/{cid}?format=raw), verifying
// every block against its CID, all under one deadline. Every choice comes from
// the nonce, so anyone holding the DAG can replay the challenge: choice(d,
// level, n) is the first 8 bytes, big-endian, of SHA-256(nonce ||
// "mirrornet-descent" || uint8(d) || int64be(level)) modulo n. The bundle is
// the choice(0, -1, n)th of the target's sorted list; descent d (0, 1, ...;
// two by default) takes link choice(d, level, n) of each dag-pb node until it
// reaches a raw block or a node without links (at most 32 levels).
//
// Receipts: each request carries the headers [HeaderProbeObserver] (the
// observer's peer ID) and [HeaderProbeNonce] (the nonce, 32 lowercase hex
// digits). A target that answers 200 adds [HeaderProbeReceipt], its
// [ProbeReceipt] "<cid>:<time>:<signature>": its Ed25519 signature over
// [ReceiptSigningBytes] (nonce, block CID, observer, time), at most
// [MaxReceiptLen] bytes. It never signs for a block it did not serve. An
// observer counts a block only with a valid receipt; a block served without
// one fails the challenge.
//
// The observer signs a [ProbeResult] naming the epoch, round, challenge
// ("descent:<nonce>:<path>,<path>" or "canary:<nonce>"), the [OutcomePass],
// [OutcomeFail] or [OutcomeTimeout] outcome, the latency, the IP address it
// reached the target at (Addr, an observation report) and, on a pass, the
// target's receipts: the root's first, then one for a leaf a descent ended
// on (at most [MaxProbeReceipts]; mirrornet sends two). It publishes it on [TopicProbe]. Probe results
// are signed envelopes of the probe kind; their maximum age on gossip is
// [MaxProbeAge]. The signer must be the Observer. Every receiver checks that
// the nonce is the derived one, that the challenge kind matches [IsCanary],
// and that every receipt is the target's signature (the key is in the
// target's peer ID) for this observer and nonce, made between Time minus
// [MaxClockDisparity] and Time plus the latency plus [MaxClockDisparity],
// the first for the bundle root; a pass of a descent without one is rejected.
// A result whose epoch or round does not match its time is ignored.
//
// Verdicts: each seated domain votes pass (it has a pass and under a third of
// its weighted results failed), or fail. A target is verified when it is
// alive and pass votes weigh more than half the seats, more than the fail
// votes, and come from at least k domains; degraded (or failing, at two
// thirds failed) when fail votes weigh more than half the seats and more than
// the pass votes. An observer's vote weighs less when it fails against most
// of its targets (Lifeguard), when its reports contradict the committee's
// verdicts, and least of all for a day after it passed a canary.
//
// # Sync ([SyncProtocolID])
//
// A node that joins late opens a stream with [SyncProtocolID] and writes one
// frame holding a [SyncRequest]. The responder writes one frame per signed
// statement it holds (at most [MaxSyncStatements]) and an empty frame to end.
// A frame is a uvarint length followed by that many bytes, at most
// [MaxStatementSize]; see [WriteFrame] and [ReadFrame]. The receiver verifies
// every statement itself, exactly as if it had come over gossip. Liveness
// statements come first, then the suspicions the responder holds, then
// the holdings statements it holds (at most [MaxSyncHoldingsBytes] of
// them in all; these frames may be up to [MaxHoldingsSize] bytes; the
// receiver pulls the rest; a receiver resets a response carrying more),
// then everything else. A
// receiver republishes on gossip the statements and suspicions a sync
// taught it that are fresh enough for gossip (at most 64 per exchange), so
// what one side of a new connection knows reaches the whole network at
// once and a mirror suspected while cut off learns it and refutes.
//
// The same framed stream, without the holdings statements, is served
// over HTTP at [HTTPStatementsPath] with content type
// [StatementsContentType], for light clients that do not run libp2p.
//
// # Release sync ([ReleaseSyncProtocolID])
//
// Gossip carries a release record or build attestation once, and sync runs
// only on a new connection, so a mirror that missed a publish (its
// subscription not yet known to the publisher, a message dropped) would
// never learn it. Every mirror therefore pulls, at a random time between
// 0.75 and 1.25 of an interval (mirrornet: the profile's RefreshMin, 30 s
// on lan), from one connected alive mirror chosen at random. On one stream:
//
//  1. the requester writes a frame holding a [ReleaseDigest]: the
//     [ReleaseRoot] of its summary (at most [MaxReleaseDigestSize] bytes);
//  2. the responder writes an empty frame if its own root is the same,
//     and the exchange ends; otherwise a frame holding its
//     [ReleaseSummary] (one [ReleaseAppSummary] per app it keeps records
//     of: latest version and [ReleaseAppHash] of every release record and
//     build attestation it keeps for the app; sorted by app ID, at most
//     [MaxReleaseSummaryApps] entries and [MaxReleaseSummarySize] bytes);
//  3. the requester writes a [ReleaseWant] (at most [MaxReleaseWantApps]
//     apps: those the responder holds a newer version of, with After its
//     own latest version, or the same version with a different hash; apps
//     its operator follows first) and closes its side;
//  4. the responder writes, per wanted app, its release records with a
//     version above After in version order, then its build attestations of
//     the app, newest version first, one frame each, at most
//     [MaxReleaseSyncRecords] records and [MaxReleaseSyncBytes] bytes, and
//     an empty frame to end.
//
// The requester verifies and applies every record exactly as if it had come
// over gossip (the book's bounds on apps it does not follow apply), and
// does not ask again for an app whose pull taught it nothing until the
// peer's hash for it changes. A responder answers only mirrors it holds
// alive or suspect (an answer can be far larger than its request), each at
// most twice per interval (burst three), at most four at once; it resets
// other streams. Two mirrors in sync exchange one
// digest and one empty frame per pull.
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
