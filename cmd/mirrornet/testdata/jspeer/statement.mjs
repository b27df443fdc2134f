// Mirrornet signed statements, written from protocol/'s package doc alone:
// the envelope protobuf, the signing buffer, canonical JSON, Ed25519 and
// peer IDs. Nothing here comes from go-libp2p or js-libp2p; node:crypto
// supplies SHA-256 and Ed25519.
import { createHash, createPublicKey, generateKeyPairSync, sign, verify as edVerify } from 'node:crypto'

export const DOMAIN_LIVENESS = 'mirrornet-liveness'
export const PAYLOAD_LIVENESS = '/mirrornet/liveness/2'
export const MAX_STATEMENT_SIZE = 64 << 10
export const MAX_CLOCK_DISPARITY_MS = 2000
export const MAX_LIVENESS_AGE_MS = 60000
// MAX_LIVENESS_TTL_MS is protocol.MaxLivenessTTL (protocol/swim.go, two hours).
export const MAX_LIVENESS_TTL_MS = 7200000
const MAX_STRING_LEN = 512
const MAX_ADDRS = 32
const MAX_BUNDLES = 512
const MAX_HOLDINGS = 4096

// The kinds the spec lists: payload type -> domain.
const KINDS = {
  '/mirrornet/liveness/2': 'mirrornet-liveness',
  '/mirrornet/probe/2': 'mirrornet-probe',
  '/mirrornet/build/1': 'mirrornet-build'
}

class Verdict extends Error {
  constructor (verdict, reason, detail) {
    super(`${reason}: ${detail}`)
    this.verdict = verdict
    this.reason = reason
  }
}
const reject = (reason, detail) => new Verdict('reject', reason, detail)
const ignore = (reason, detail) => new Verdict('ignore', reason, detail)

// Unsigned LEB128 varint.
export function uvarint (n) {
  const out = []
  let v = BigInt(n)
  do {
    let b = Number(v & 0x7fn)
    v >>= 7n
    if (v > 0n) b |= 0x80
    out.push(b)
  } while (v > 0n)
  return Buffer.from(out)
}

function readUvarint (buf, off) {
  let v = 0n
  let shift = 0n
  for (let i = 0; i < 10; i++) {
    if (off + i >= buf.length) throw reject('malformed', 'truncated varint')
    const b = buf[off + i]
    v |= BigInt(b & 0x7f) << shift
    if ((b & 0x80) === 0) return [v, off + i + 1]
    shift += 7n
  }
  throw reject('malformed', 'varint too long')
}

function field (num, data) {
  return Buffer.concat([uvarint((num << 3) | 2), uvarint(data.length), data])
}

export function signingBuffer (domain, type, payload) {
  const parts = []
  for (const f of [Buffer.from(domain), Buffer.from(type), Buffer.from(payload)]) {
    parts.push(uvarint(f.length), f)
  }
  return Buffer.concat(parts)
}

// encodePublicKey is libp2p's PublicKey message for an Ed25519 key.
function encodePublicKey (raw) {
  return Buffer.concat([Buffer.from([0x08, 0x01]), field(2, raw)])
}

export function encodeEnvelope (rawPub, type, payload, sig) {
  return Buffer.concat([field(1, encodePublicKey(rawPub)), field(2, Buffer.from(type)), field(3, Buffer.from(payload)), field(5, sig)])
}

// parseFields reads a protobuf message of length-delimited and varint
// fields, in whatever order they come.
function parseFields (buf) {
  const fields = []
  let off = 0
  while (off < buf.length) {
    let tag
    ;[tag, off] = readUvarint(buf, off)
    const num = Number(tag >> 3n)
    const wire = Number(tag & 7n)
    if (wire === 0) {
      let v
      ;[v, off] = readUvarint(buf, off)
      fields.push({ num, wire, value: v })
    } else if (wire === 2) {
      let len
      ;[len, off] = readUvarint(buf, off)
      if (BigInt(off) + len > BigInt(buf.length)) throw reject('malformed', 'field overruns message')
      fields.push({ num, wire, value: buf.subarray(off, off + Number(len)) })
      off += Number(len)
    } else {
      throw reject('malformed', `wire type ${wire}`)
    }
  }
  return fields
}

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
function base58 (buf) {
  let n = BigInt('0x' + (buf.length ? buf.toString('hex') : '0'))
  let s = ''
  while (n > 0n) {
    s = B58[Number(n % 58n)] + s
    n /= 58n
  }
  for (const b of buf) {
    if (b !== 0) break
    s = '1' + s
  }
  return s
}

// peerIdOf is the libp2p peer ID of a raw Ed25519 public key: the identity
// multihash of its PublicKey message, base58btc.
export function peerIdOf (rawPub) {
  const pk = encodePublicKey(rawPub)
  return base58(Buffer.concat([Buffer.from([0x00, pk.length]), pk]))
}

const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex')
function edPublicKey (raw) {
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519, raw]), format: 'der', type: 'spki' })
}

// Go's encoding/json escapes <, > and & (HTML-safe) and U+2028/U+2029;
// JSON.stringify does not.
function goString (s) {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, c => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'))
}

// encodeLiveness writes a Liveness exactly as Go's encoding/json does for
// protocol.Liveness: fields in declaration order, region, apps and ttl
// omitted when empty.
export function encodeLiveness (l) {
  const parts = [
    `"peer":${goString(l.peer ?? '')}`,
    `"state":${goString(l.state ?? '')}`,
    `"seq":${BigInt(l.seq ?? 0).toString()}`,
    `"time":${BigInt(l.time ?? 0).toString()}`,
    `"addrs":[${(l.addrs ?? []).map(goString).join(',')}]`,
    `"http":${goString(l.http ?? '')}`,
    // bundles is absent (not [] and not null) when the statement names
    // its holdings by digest only.
    ...(Array.isArray(l.bundles) ? [`"bundles":[${l.bundles.map(goString).join(',')}]`] : []),
    `"version":${goString(l.version ?? '')}`
  ]
  if (l.region) parts.push(`"region":${goString(l.region)}`)
  if (l.apps && l.apps.length) parts.push(`"apps":[${l.apps.map(goString).join(',')}]`)
  if (l.ttl) parts.push(`"ttl":${BigInt(l.ttl).toString()}`)
  if (l.holdings) parts.push(`"holdings":${goString(l.holdings)}`)
  if (l.holdings_count) parts.push(`"holdings_count":${BigInt(l.holdings_count).toString()}`)
  return Buffer.from('{' + parts.join(',') + '}')
}

const LIVENESS_FIELDS = { peer: 'string', state: 'string', seq: 'number', time: 'number', addrs: 'list', http: 'string', bundles: 'list', version: 'string', region: 'string', apps: 'list', ttl: 'number', holdings: 'string', holdings_count: 'number' }

function sortedUnique (xs) {
  for (let i = 1; i < xs.length; i++) if (!(xs[i - 1] < xs[i])) return false
  return true
}

// decodeLiveness decodes strictly (unknown fields and wrong types are
// errors), requires the canonical encoding, and validates the fields.
export function decodeLiveness (payload) {
  let l
  try {
    l = JSON.parse(payload.toString('utf8'))
  } catch (e) {
    throw reject('payload', 'not JSON')
  }
  if (l === null || typeof l !== 'object' || Array.isArray(l)) throw reject('payload', 'not an object')
  for (const [k, v] of Object.entries(l)) {
    const t = LIVENESS_FIELDS[k]
    if (!t) throw reject('payload', `unknown field ${k}`)
    if (t === 'list') {
      if (!Array.isArray(v) || v.some(x => typeof x !== 'string')) throw reject('payload', `${k} is not a list of strings`)
    } else if (t === 'number') {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw reject('payload', `${k} is not a safe integer`)
    } else if (typeof v !== t) {
      throw reject('payload', `${k} is not a ${t}`)
    }
  }
  if (!encodeLiveness(l).equals(payload)) throw reject('payload', 'not canonical')
  if (!l.peer) throw reject('payload', 'peer is empty')
  if (l.state !== 'up' && l.state !== 'leaving') throw reject('payload', 'state')
  if (!(l.seq > 0)) throw reject('payload', 'seq is zero')
  if (!(l.time > 0)) throw reject('payload', 'time is not positive')
  if ((l.ttl ?? 0) > MAX_LIVENESS_TTL_MS) throw reject('payload', 'ttl above its limit')
  for (const k of ['peer', 'http', 'version', 'region']) {
    if ((l[k] ?? '').length > MAX_STRING_LEN) throw reject('payload', `${k} too long`)
  }
  for (const [k, max] of [['addrs', MAX_ADDRS], ['bundles', MAX_BUNDLES], ['apps', MAX_BUNDLES]]) {
    const xs = l[k] ?? []
    if (xs.length > max) throw reject('payload', `${k} has too many entries`)
    if (xs.some(x => x === '' || x.length > MAX_STRING_LEN)) throw reject('payload', `bad entry in ${k}`)
  }
  if (!sortedUnique(l.bundles ?? []) || !sortedUnique(l.apps ?? [])) throw reject('payload', 'list not sorted and unique')
  checkHoldings(l)
  return l
}

// holdingsDigest is the spec's digest of a sorted set of root CIDs: the
// sha2-256 multihash (hex) of uvarint(len(cid)) || cid for each CID.
export function holdingsDigest (sorted) {
  const h = createHash('sha256')
  for (const c of sorted) {
    const b = Buffer.from(c, 'utf8')
    let n = b.length
    const len = []
    do { len.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0)); n >>>= 7 } while (n > 0)
    h.update(Buffer.from(len))
    h.update(b)
  }
  return '1220' + h.digest('hex')
}

// checkHoldings: a statement says what it holds, inline (bundles) or by
// digest (holdings, holdings_count), and the two agree when it does both.
function checkHoldings (l) {
  const digest = l.holdings ?? ''
  const count = l.holdings_count ?? 0
  if (l.bundles == null && digest === '') throw reject('payload', 'neither bundles nor a holdings digest')
  if (digest === '') {
    if (count !== 0) throw reject('payload', 'holdings_count without holdings')
    return
  }
  if (!/^1220[0-9a-f]{64}$/.test(digest)) throw reject('payload', 'holdings is not a sha2-256 multihash in hex')
  if (count > MAX_HOLDINGS) throw reject('payload', 'holdings_count above its limit')
  if (l.bundles != null && (l.bundles.length !== count || holdingsDigest(l.bundles) !== digest)) throw reject('payload', 'bundles do not match the holdings digest')
}

// verifyStatement checks a signed statement as the spec's Validation
// section says and returns { verdict, reason, signer, liveness }.
export function verifyStatement (raw, nowMs) {
  raw = Buffer.from(raw)
  try {
    if (raw.length > MAX_STATEMENT_SIZE) throw reject('oversize', `${raw.length} bytes`)
    const fields = parseFields(raw)
    const get = num => fields.find(f => f.num === num && f.wire === 2)?.value
    for (const f of fields) {
      if (![1, 2, 3, 5].includes(f.num) || f.wire !== 2) throw reject('malformed', `unexpected field ${f.num}`)
    }
    const pkMsg = get(1)
    const type = get(2)
    const payload = get(3)
    const sig = get(5)
    if (!pkMsg || !type || !payload || !sig) throw reject('malformed', 'missing field')
    const pkFields = parseFields(pkMsg)
    const keyType = pkFields.find(f => f.num === 1 && f.wire === 0)?.value
    const keyData = pkFields.find(f => f.num === 2 && f.wire === 2)?.value
    if (keyType === undefined || keyData === undefined) throw reject('malformed', 'public key')
    // Canonical: the exact bytes of the one encoding the spec allows.
    const again = Buffer.concat([field(1, Buffer.concat([uvarint(1 << 3), uvarint(keyType), field(2, keyData)])), field(2, type), field(3, payload), field(5, sig)])
    if (!again.equals(raw)) throw reject('malformed', 'non-canonical envelope encoding')
    const domain = KINDS[type.toString()]
    if (!domain) throw reject('kind', `payload type ${type}`)
    if (keyType !== 1n || keyData.length !== 32) throw reject('key_type', 'signer key is not Ed25519')
    if (sig.length !== 64 || !edVerify(null, signingBuffer(domain, type, payload), edPublicKey(keyData), sig)) {
      throw reject('signature', 'signature does not verify')
    }
    const signer = peerIdOf(keyData)
    if (domain !== DOMAIN_LIVENESS) {
      // This peer reads liveness only; other kinds are well signed.
      return { verdict: 'accept', reason: 'ok', signer, kind: type.toString() }
    }
    const l = decodeLiveness(payload)
    if (l.peer !== signer) throw reject('subject', `statement names ${l.peer}, signed by ${signer}`)
    if (l.time > nowMs + MAX_CLOCK_DISPARITY_MS) throw ignore('future', 'ahead of the clock')
    if (nowMs - l.time > MAX_LIVENESS_AGE_MS) throw ignore('too_old', 'older than its maximum age')
    return { verdict: 'accept', reason: 'ok', signer, liveness: l, kind: 'liveness' }
  } catch (e) {
    if (e instanceof Verdict) return { verdict: e.verdict, reason: e.reason, detail: e.message }
    return { verdict: 'reject', reason: 'malformed', detail: String(e) }
  }
}

// newKey makes an Ed25519 key and its peer ID.
export function newKey () {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url')
  return { privateKey, raw, peerId: peerIdOf(raw) }
}

// signLiveness seals a liveness statement with key.
export function signLiveness (key, l) {
  const payload = encodeLiveness(l)
  const sig = sign(null, signingBuffer(DOMAIN_LIVENESS, PAYLOAD_LIVENESS, payload), key.privateKey)
  return encodeEnvelope(key.raw, PAYLOAD_LIVENESS, payload, sig)
}

export function sha256 (data) {
  return createHash('sha256').update(data).digest()
}
