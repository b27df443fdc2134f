// Signed liveness statements, verified in the browser exactly as
// mirrornet's protocol/ package specifies and attest.Verify checks them:
// a libp2p signed envelope (protobuf: public_key=1, payload_type=2,
// payload=3, signature=5) in its one canonical encoding, an Ed25519 key,
// a signature over
//
//   uvarint(len(domain)) || domain || uvarint(len(type)) || type || uvarint(len(payload)) || payload
//
// with domain "mirrornet-liveness" and type "/mirrornet/liveness/2", and a
// payload that is exactly the JSON Go's encoding/json writes for
// protocol.Liveness (field order, HTML-safe escaping, omitempty), naming
// the signer as its subject.
//
// Pure: no I/O, no clock (callers pass now in Unix milliseconds).

import { publicKeyFromProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys'

// Limits, named as in package protocol and the Go light client.
export const MaxStatementSize = 64 << 10
export const MaxSyncStatements = 8192
export const MaxClockDisparityMs = 2000
export const MaxLivenessAgeMs = 60_000
// MaxLivenessTTLMs bounds a statement's ttl: the signer's promise to sign
// again within it (mirrors refresh at an interval that grows with the
// network; a statement is current until its time plus ttl). It mirrors
// protocol.MaxLivenessTTL (protocol/swim.go, two hours) and must change with
// it: the TTL grows with the network, so a lower limit here refuses every
// statement of a large network.
export const MaxLivenessTTLMs = 7_200_000
export const MaxStringLen = 512
export const MaxAddrs = 32
export const MaxBundles = 512
export const DomainLiveness = 'mirrornet-liveness'
export const PayloadLiveness = '/mirrornet/liveness/2'
// Holdings (see protocol, section Holdings): a statement may name what
// its mirror holds by the digest of a separate signed holdings statement,
// which the mirror serves at HoldingsPath.
export const MaxHoldings = 4096
export const MaxHoldingsSize = 320 << 10
export const DomainHoldings = 'mirrornet-holdings'
export const PayloadHoldings = '/mirrornet/holdings/1'
export const HoldingsPath = '/mirrornet/v1/holdings'
export const HoldingsContentType = 'application/vnd.mirrornet.statement'
// MaxHoldAnswers bounds the cached "does this mirror hold that root"
// answers (cleared when full).
export const MaxHoldAnswers = 4096
export const StatementsPath = '/mirrornet/v1/statements'
export const StatementsContentType = 'application/vnd.mirrornet.statements'

// StatementError says why a statement was refused. reason is the class
// protocol/testdata/statements.json names (malformed, oversize, kind,
// key_type, signature, payload, subject, future, too_old); timing marks
// a genuine statement that is only too old or too early (gossip: Ignore).
export class StatementError extends Error {
  constructor (msg, { timing = false, reason = 'malformed' } = {}) {
    super(msg)
    this.name = 'StatementError'
    this.timing = timing
    this.reason = reason
  }
}

// verdict maps a verification outcome to the gossip verdict and reason
// the protocol's test vectors use.
export function verdictOf (err) {
  if (err == null) return { verdict: 'accept', reason: 'ok' }
  if (err.timing) return { verdict: 'ignore', reason: err.reason }
  return { verdict: 'reject', reason: err.reason ?? 'malformed' }
}

const te = new TextEncoder()
const td = new TextDecoder('utf-8', { fatal: true })

// readUvarint returns [value, bytes read] or throws on a malformed or
// overlong varint. Values above 2^53 are refused (no statement needs them).
export function readUvarint (buf, off) {
  let x = 0
  let s = 1
  for (let i = 0; i < 10; i++) {
    if (off + i >= buf.length) throw new StatementError('truncated varint')
    const b = buf[off + i]
    x += (b & 0x7f) * s
    if (b < 0x80) {
      if (i > 0 && b === 0) throw new StatementError('non-minimal varint')
      if (!Number.isSafeInteger(x)) throw new StatementError('varint too large')
      return [x, i + 1]
    }
    s *= 128
  }
  throw new StatementError('varint too long')
}

export function uvarint (n) {
  const out = []
  while (n >= 0x80) {
    out.push((n % 128) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return Uint8Array.from(out)
}

function concat (parts) {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.length }
  return out
}

function lenPrefixed (b) { return concat([uvarint(b.length), b]) }

// FrameReader splits the statements stream (uvarint length, then bytes; an
// empty frame ends it) as chunks arrive. It never holds more than one frame
// of at most MaxStatementSize bytes plus a chunk.
export class FrameReader {
  constructor () { this.buf = new Uint8Array(0); this.done = false; this.count = 0 }
  // push appends a chunk and returns the complete frames in it. Throws on a
  // frame over MaxStatementSize or more than MaxSyncStatements frames.
  push (chunk) {
    this.buf = this.buf.length === 0 ? chunk : concat([this.buf, chunk])
    const out = []
    while (!this.done) {
      let n, k
      try {
        [n, k] = readUvarint(this.buf, 0)
      } catch (e) {
        if (e.message === 'truncated varint') break
        throw e
      }
      if (n > MaxStatementSize) throw new StatementError(`frame of ${n} bytes (limit ${MaxStatementSize})`)
      if (n === 0) { this.done = true; this.buf = this.buf.subarray(k); break }
      if (this.buf.length < k + n) break
      out.push(this.buf.slice(k, k + n))
      this.buf = this.buf.subarray(k + n)
      if (++this.count > MaxSyncStatements) throw new StatementError(`more than ${MaxSyncStatements} statements`)
    }
    return out
  }
}

// decodeEnvelope parses the protobuf fields of a signed envelope; only
// fields 1, 2, 3 and 5 (length-delimited, each at most once) are allowed.
function decodeEnvelope (raw) {
  const f = {}
  let off = 0
  while (off < raw.length) {
    const [tag, k] = readUvarint(raw, off)
    off += k
    const field = Math.floor(tag / 8)
    const wire = tag & 7
    if (wire !== 2 || ![1, 2, 3, 5].includes(field) || f[field] != null) {
      throw new StatementError(`malformed envelope: unexpected field ${field} wire type ${wire}`)
    }
    const [n, k2] = readUvarint(raw, off)
    off += k2
    if (off + n > raw.length) throw new StatementError('malformed envelope: truncated field')
    f[field] = raw.subarray(off, off + n)
    off += n
  }
  for (const i of [1, 2, 3, 5]) {
    if (f[i] == null) throw new StatementError(`malformed envelope: missing field ${i}`)
  }
  return { publicKey: f[1], payloadType: f[2], payload: f[3], signature: f[5] }
}

function encodeEnvelope (e) {
  const parts = []
  for (const [field, v] of [[1, e.publicKey], [2, e.payloadType], [3, e.payload], [5, e.signature]]) {
    if (v.length === 0) continue
    parts.push(uvarint(field * 8 + 2), lenPrefixed(v))
  }
  return concat(parts)
}

function bytesEqual (a, b) {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

// goString encodes s as Go's encoding/json does (HTML-safe).
export function goString (s) {
  let out = '"'
  for (const ch of s) {
    const c = ch.codePointAt(0)
    if (ch === '"') out += '\\"'
    else if (ch === '\\') out += '\\\\'
    else if (c === 0x0a) out += '\\n'
    else if (c === 0x0d) out += '\\r'
    else if (c === 0x09) out += '\\t'
    else if (c === 0x08) out += '\\b'
    else if (c === 0x0c) out += '\\f'
    else if (c < 0x20 || ch === '<' || ch === '>' || ch === '&' || c === 0x2028 || c === 0x2029) {
      out += '\\u' + c.toString(16).padStart(4, '0')
    } else out += ch
  }
  return out + '"'
}

const livenessFields = ['peer', 'state', 'seq', 'time', 'addrs', 'http', 'bundles', 'version', 'region', 'apps', 'ttl', 'holdings', 'holdings_count']

// encodeLiveness is protocol.Encode(&Liveness{...}).
export function encodeLiveness (l) {
  const parts = [
    '"peer":' + goString(l.peer),
    '"state":' + goString(l.state),
    '"seq":' + String(l.seq),
    '"time":' + String(l.time),
    '"addrs":[' + l.addrs.map(goString).join(',') + ']',
    '"http":' + goString(l.http)
  ]
  // bundles is absent (not null, not []) when the statement names its
  // holdings by digest only.
  if (Array.isArray(l.bundles)) parts.push('"bundles":[' + l.bundles.map(goString).join(',') + ']')
  parts.push('"version":' + goString(l.version))
  if (l.region != null && l.region !== '') parts.push('"region":' + goString(l.region))
  if (l.apps != null && l.apps.length > 0) parts.push('"apps":[' + l.apps.map(goString).join(',') + ']')
  if (l.ttl != null && l.ttl !== 0) parts.push('"ttl":' + String(l.ttl))
  if (l.holdings != null && l.holdings !== '') parts.push('"holdings":' + goString(l.holdings))
  if (l.holdings_count != null && l.holdings_count !== 0) parts.push('"holdings_count":' + String(l.holdings_count))
  return '{' + parts.join(',') + '}'
}

function utf8Len (s) { return te.encode(s).length }

function checkStrings (name, v, max) {
  if (!Array.isArray(v)) throw new StatementError(`invalid payload: ${name} is not a list`)
  if (v.length > max) throw new StatementError(`invalid payload: ${name} has ${v.length} entries (limit ${max})`)
  for (let i = 0; i < v.length; i++) {
    if (typeof v[i] !== 'string' || v[i] === '') throw new StatementError(`invalid payload: bad entry in ${name}`)
    if (utf8Len(v[i]) > MaxStringLen) throw new StatementError(`invalid payload: ${name} entry longer than ${MaxStringLen} bytes`)
    if (i > 0 && !(v[i - 1] < v[i]) && name !== 'addrs') throw new StatementError(`invalid payload: ${name} not sorted and unique`)
  }
}

// decodeLiveness is protocol.DecodeLiveness: strict, canonical, valid.
export function decodeLiveness (payload) {
  let text, l
  try {
    text = td.decode(payload)
    l = JSON.parse(text)
  } catch (e) {
    throw new StatementError('invalid payload: not JSON')
  }
  if (l == null || typeof l !== 'object' || Array.isArray(l)) throw new StatementError('invalid payload: not an object')
  for (const k of Object.keys(l)) {
    if (!livenessFields.includes(k)) throw new StatementError(`invalid payload: unknown field ${JSON.stringify(k).slice(0, 40)}`)
  }
  for (const k of ['peer', 'state', 'http', 'version']) {
    if (typeof l[k] !== 'string') throw new StatementError(`invalid payload: ${k} is not a string`)
  }
  if (l.region != null && typeof l.region !== 'string') throw new StatementError('invalid payload: region is not a string')
  for (const k of ['seq', 'time']) {
    if (!Number.isSafeInteger(l[k])) throw new StatementError(`invalid payload: ${k} is not an integer`)
  }
  if (l.ttl != null && (!Number.isSafeInteger(l.ttl) || l.ttl < 0 || l.ttl > MaxLivenessTTLMs)) throw new StatementError('invalid payload: bad ttl')
  if (l.seq <= 0) throw new StatementError('invalid payload: seq is zero')
  if (l.time <= 0) throw new StatementError('invalid payload: time is not positive')
  if (l.peer === '') throw new StatementError('invalid payload: peer is empty')
  if (l.state !== 'up' && l.state !== 'leaving') throw new StatementError('invalid payload: bad state')
  for (const k of ['peer', 'http', 'version', 'region']) {
    if (l[k] != null && utf8Len(l[k]) > MaxStringLen) throw new StatementError(`invalid payload: ${k} longer than ${MaxStringLen} bytes`)
  }
  checkStrings('addrs', l.addrs, MaxAddrs)
  if (l.bundles != null) checkStrings('bundles', l.bundles, MaxBundles)
  if (l.apps != null) checkStrings('apps', l.apps, MaxBundles)
  if (l.holdings != null && !(typeof l.holdings === 'string' && /^1220[0-9a-f]{64}$/.test(l.holdings))) throw new StatementError('invalid payload: holdings is not a sha2-256 multihash in hex')
  if (l.holdings_count != null && (!Number.isSafeInteger(l.holdings_count) || l.holdings_count < 0 || l.holdings_count > MaxHoldings)) throw new StatementError('invalid payload: bad holdings_count')
  if (l.bundles == null && (l.holdings == null || l.holdings === '')) throw new StatementError('invalid payload: liveness carries neither bundles nor a holdings digest')
  if ((l.holdings == null || l.holdings === '') && l.holdings_count != null && l.holdings_count !== 0) throw new StatementError('invalid payload: holdings_count without holdings')
  if (encodeLiveness(l) !== text) throw new StatementError('payload is not in canonical encoding')
  return l
}

// verifyStatement is attest.Verify for liveness statements. It resolves
// to { signer, liveness, raw } or throws a StatementError; a genuine
// statement that is only too old or too early throws with timing set and
// the statement attached as err.statement.
export async function verifyStatement (raw, nowMs) {
  if (raw.length > MaxStatementSize) throw new StatementError(`statement of ${raw.length} bytes (limit ${MaxStatementSize})`, { reason: 'oversize' })
  const env = decodeEnvelope(raw)
  if (!bytesEqual(encodeEnvelope(env), raw)) throw new StatementError('malformed envelope: non-canonical encoding')
  const type = td.decode(env.payloadType)
  if (type !== PayloadLiveness) throw new StatementError(`unknown statement kind ${JSON.stringify(type).slice(0, 60)}`, { reason: 'kind' })
  let key
  try {
    key = publicKeyFromProtobuf(env.publicKey)
  } catch (e) {
    throw new StatementError('malformed envelope: bad public key')
  }
  if (key.type !== 'Ed25519') throw new StatementError('signer key is not Ed25519', { reason: 'key_type' })
  if (!bytesEqual(publicKeyToProtobuf(key), env.publicKey)) throw new StatementError('malformed envelope: non-canonical public key')
  const signed = concat([lenPrefixed(te.encode(DomainLiveness)), lenPrefixed(env.payloadType), lenPrefixed(env.payload)])
  if (!(await key.verify(signed, env.signature))) throw new StatementError('signature does not verify', { reason: 'signature' })
  const signer = key.toString()
  let liveness
  try {
    liveness = decodeLiveness(env.payload)
  } catch (e) {
    throw new StatementError(e.message, { reason: 'payload' })
  }
  if (liveness.peer !== signer) throw new StatementError(`subject ${liveness.peer} is not the signer ${signer}`, { reason: 'subject' })
  if (Array.isArray(liveness.bundles) && liveness.holdings != null && liveness.holdings !== '' &&
      (liveness.bundles.length !== (liveness.holdings_count ?? 0) || await holdingsDigest(liveness.bundles) !== liveness.holdings)) {
    throw new StatementError('invalid payload: holdings do not match their digest', { reason: 'payload' })
  }
  const st = { signer, liveness, raw }
  if (liveness.time > nowMs + MaxClockDisparityMs) {
    const e = new StatementError(`statement time is ${liveness.time - nowMs} ms ahead`, { timing: true, reason: 'future' })
    e.statement = st
    throw e
  }
  if (nowMs - liveness.time > MaxLivenessAgeMs) {
    const e = new StatementError(`statement is ${nowMs - liveness.time} ms old`, { timing: true, reason: 'too_old' })
    e.statement = st
    e.tooOld = true
    throw e
  }
  return st
}

// holdingsDigest is protocol.HoldingsDigest: the sha2-256 multihash, in
// lowercase hex, of uvarint(len(cid)) || cid over the sorted CIDs.
export async function holdingsDigest (sorted) {
  const parts = []
  for (const c of sorted) parts.push(lenPrefixed(te.encode(c)))
  const sum = new Uint8Array(await crypto.subtle.digest('SHA-256', concat(parts)))
  let hex = '1220'
  for (const b of sum) hex += b.toString(16).padStart(2, '0')
  return hex
}

const holdingsFields = ['peer', 'seq', 'time', 'bundles']

// decodeHoldings is protocol.DecodeHoldings: strict, canonical, valid.
function decodeHoldings (payload) {
  let text, h
  try {
    text = td.decode(payload)
    h = JSON.parse(text)
  } catch (e) {
    throw new StatementError('invalid payload: not JSON')
  }
  if (h == null || typeof h !== 'object' || Array.isArray(h)) throw new StatementError('invalid payload: not an object')
  for (const k of Object.keys(h)) {
    if (!holdingsFields.includes(k)) throw new StatementError(`invalid payload: unknown field ${JSON.stringify(k).slice(0, 40)}`)
  }
  if (typeof h.peer !== 'string' || h.peer === '' || utf8Len(h.peer) > MaxStringLen) throw new StatementError('invalid payload: bad peer')
  for (const k of ['seq', 'time']) {
    if (!Number.isSafeInteger(h[k]) || h[k] <= 0) throw new StatementError(`invalid payload: bad ${k}`)
  }
  checkStrings('bundles', h.bundles, MaxHoldings)
  const canon = '{"peer":' + goString(h.peer) + ',"seq":' + String(h.seq) + ',"time":' + String(h.time) + ',"bundles":[' + h.bundles.map(goString).join(',') + ']}'
  if (canon !== text) throw new StatementError('payload is not in canonical encoding')
  return h
}

// verifyHoldings is attest.VerifyHoldings: raw must be a holdings
// statement signed by peer whose list has digest digest. Resolves to the
// list (sorted) or throws a StatementError.
export async function verifyHoldings (raw, peer, digest) {
  if (raw.length > MaxHoldingsSize) throw new StatementError(`holdings statement of ${raw.length} bytes (limit ${MaxHoldingsSize})`, { reason: 'oversize' })
  const env = decodeEnvelope(raw)
  if (!bytesEqual(encodeEnvelope(env), raw)) throw new StatementError('malformed envelope: non-canonical encoding')
  if (td.decode(env.payloadType) !== PayloadHoldings) throw new StatementError('not a holdings statement', { reason: 'kind' })
  let key
  try {
    key = publicKeyFromProtobuf(env.publicKey)
  } catch (e) {
    throw new StatementError('malformed envelope: bad public key')
  }
  if (key.type !== 'Ed25519') throw new StatementError('signer key is not Ed25519', { reason: 'key_type' })
  if (!bytesEqual(publicKeyToProtobuf(key), env.publicKey)) throw new StatementError('malformed envelope: non-canonical public key')
  const signed = concat([lenPrefixed(te.encode(DomainHoldings)), lenPrefixed(env.payloadType), lenPrefixed(env.payload)])
  if (!(await key.verify(signed, env.signature))) throw new StatementError('signature does not verify', { reason: 'signature' })
  let h
  try {
    h = decodeHoldings(env.payload)
  } catch (e) {
    throw new StatementError(e.message, { reason: 'payload' })
  }
  const signer = key.toString()
  if (h.peer !== signer) throw new StatementError(`subject ${h.peer} is not the signer ${signer}`, { reason: 'subject' })
  if (signer !== peer) throw new StatementError(`holdings signed by ${signer}, not by ${peer}`, { reason: 'holdings_mismatch' })
  if (await holdingsDigest(h.bundles) !== digest) throw new StatementError('holdings do not match the digest of the liveness statement', { reason: 'holdings_mismatch' })
  return h.bundles
}

// normalizeHTTP is the Go client's normalizeHTTP: an http(s) base URL with
// no user, query or fragment, without trailing slashes.
export function normalizeHTTP (s) {
  let u
  try {
    u = new URL(s)
  } catch (e) {
    throw new StatementError(`mirror URL ${JSON.stringify(String(s)).slice(0, 80)} does not parse`)
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.host === '' || u.search !== '' || u.hash !== '' ||
      u.username !== '' || u.password !== '' || /[?#@]/.test(s)) {
    throw new StatementError(`mirror URL ${JSON.stringify(String(s)).slice(0, 80)}: want http(s)://host[:port]`)
  }
  return (u.protocol + '//' + u.host + u.pathname).replace(/\/+$/, '')
}

// stale: the statement is more than maxAgeMs past its ttl (0: a
// heartbeat statement), as the Go client judges it.
function stale (l, nowMs, maxAgeMs) {
  return nowMs - l.time > Math.min(l.ttl ?? 0, MaxLivenessTTLMs) + maxAgeMs
}

// HealthView keeps the latest (highest seq) verified liveness statement per
// signer, as the Go client's healthView does.
export class HealthView {
  constructor () {
    this.latest = new Map() // signer -> statement
    this.rejected = new Map() // source -> count
    // holds: 'signer digest root' -> whether the verified holdings
    // statement of that digest lists root (bounded: MaxHoldAnswers).
    this.holds = new Map()
  }

  // lists: statement st says its mirror holds root, inline or by a
  // verified holdings statement of its digest.
  lists (st, root) {
    const l = st.liveness
    if (Array.isArray(l.bundles)) return l.bundles.includes(root)
    return this.holds.get(st.signer + ' ' + l.holdings + ' ' + root) === true
  }

  // needHoldings lists the up, fresh mirrors whose statements name their
  // holdings by digest and whose answer for root is not known yet.
  needHoldings (root, nowMs, maxAgeMs) {
    const out = []
    for (const st of this.latest.values()) {
      const l = st.liveness
      if (Array.isArray(l.bundles) || l.state !== 'up' || l.http === '' || stale(l, nowMs, maxAgeMs)) continue
      if (this.holds.has(st.signer + ' ' + l.holdings + ' ' + root)) continue
      let u
      try { u = normalizeHTTP(l.http) } catch { continue }
      out.push({ url: u, peer: st.signer, digest: l.holdings })
    }
    return out
  }

  // setHolds records whether the mirror peer, whose statement names
  // holdings digest, holds root.
  setHolds (peer, digest, root, held) {
    if (this.holds.size >= MaxHoldAnswers) this.holds.clear()
    this.holds.set(peer + ' ' + digest + ' ' + root, held)
  }

  // add verifies raw and keeps it if newer than what is held for its
  // signer. Returns null when kept or superseded, or the error that made
  // the statement unusable (the caller logs it).
  async add (source, raw, nowMs) {
    let st
    try {
      st = await verifyStatement(raw, nowMs)
    } catch (e) {
      if (e.tooOld && e.statement) {
        st = e.statement // kept: proves the mirror dead
      } else {
        // A kind this view does not use (probe results, suspicions,
        // holdings, ...) is not bad input: the statements stream carries
        // every kind a mirror holds.
        if (e.reason !== 'kind') this.rejected.set(source, (this.rejected.get(source) ?? 0) + 1)
        return e
      }
    }
    const old = this.latest.get(st.signer)
    if (old == null || old.liveness.seq < st.liveness.seq) this.latest.set(st.signer, st)
    return null
  }

  // usable lists mirrors whose latest statement is up, at most maxAgeMs
  // old, names an acceptable HTTP URL and lists root. Bad URLs are
  // reported through onBadURL once per statement.
  usable (root, nowMs, maxAgeMs, onBadURL) {
    const out = new Map()
    for (const st of this.latest.values()) {
      const l = st.liveness
      if (l.state !== 'up' || l.http === '' || stale(l, nowMs, maxAgeMs)) continue
      if (!this.lists(st, root)) continue
      let u
      try {
        u = normalizeHTTP(l.http)
      } catch (e) {
        onBadURL?.(st, e)
        continue
      }
      out.set(u, { url: u, peer: st.signer, version: l.version, time: l.time })
    }
    return [...out.values()].sort((a, b) => a.url < b.url ? -1 : a.url > b.url ? 1 : 0)
  }

  // statusOf says why a mirror URL is not usable.
  statusOf (u, root, nowMs, maxAgeMs) {
    for (const st of this.latest.values()) {
      let h
      try { h = normalizeHTTP(st.liveness.http) } catch { continue }
      if (h !== u) continue
      const l = st.liveness
      if (l.state !== 'up') return 'mirror is ' + l.state
      if (stale(l, nowMs, maxAgeMs)) return `latest statement is ${Math.round((nowMs - l.time) / 1000)} s old`
      if (!Array.isArray(l.bundles) && !this.holds.has(st.signer + ' ' + l.holdings + ' ' + root)) return 'its holdings statement is not verified yet'
      if (!this.lists(st, root)) return 'mirror does not list ' + root
      return 'usable'
    }
    return 'no statement'
  }
}
