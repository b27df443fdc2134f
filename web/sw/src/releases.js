// Signed release records, verified in the browser as mirrornet's Go code
// does (protocol.SignedRelease, attest.VerifyRelease, internal/release's
// Book): which CID is an app's current release is decided here, from
// records its maintainers signed, never from what a mirror says.
//
// A signed release is canonical JSON {"release": base64(record),
// "signatures": [{"key": peer ID, "sig": base64}]}, signatures sorted by
// key then bytes; each signature is Ed25519 over
//
//   uvarint(len(d)) || d || uvarint(len(t)) || t || uvarint(len(r)) || r
//
// with d "mirrornet-release", t "/mirrornet/release/1" and r the record's
// exact bytes. The record is canonical JSON too (Go's encoding/json of
// protocol.Release). The rules (TUF's):
//
//   - threshold: distinct keys of the record's own maintainer set reach its
//     threshold; a signature that does not verify, or by a key outside the
//     record's sets, rejects the record;
//   - rollback: a version not above the highest accepted is refused, even
//     when that one has expired;
//   - freeze: past its expiry a record is stale (it still extends the chain
//     and blocks rollbacks);
//   - rotation: a record whose set differs from the current one names the
//     current set as previous and carries both thresholds;
//   - anchor: the first record accepted for an app is signed by the set its
//     app ID commits to.
//
// Pure: no I/O, no clock (callers pass now in Unix milliseconds).

import { publicKeyFromProtobuf } from '@libp2p/crypto/keys'
import { base58btc } from 'multiformats/bases/base58'
import { sha256 } from 'multiformats/hashes/sha2'
import { goString, uvarint, MaxStatementSize, MaxStringLen, MaxClockDisparityMs } from './statements.js'

export const DomainRelease = 'mirrornet-release'
export const PayloadRelease = '/mirrornet/release/1'
export const MaxMaintainers = 32
export const MaxReleaseSignatures = 2 * MaxMaintainers
export const Ed25519SignatureSize = 64
export const AppIDPrefix = 'app-b'
const appIDLen = AppIDPrefix.length + 52

// ReleaseError says why a record was refused. reason is one of: oversize,
// malformed, payload, key_type, unknown_signer, signature, threshold,
// future (verification); not_anchored, duplicate, rollback, name_change,
// unknown_previous, old_threshold, new_threshold (the chain); other_app
// (a record of an app this worker does not serve). verdict is what gossip
// would do with it: reject (provably bad) or ignore (stale, replayed, not
// yet anchored, not ours).
export class ReleaseError extends Error {
  constructor (msg, reason, verdict = 'reject') {
    super(msg)
    this.name = 'ReleaseError'
    this.reason = reason
    this.verdict = verdict
  }
}

const te = new TextEncoder()
const td = new TextDecoder('utf-8', { fatal: true })

// isSignedRelease tells a signed release from a signed envelope in a
// statements stream (protocol.IsSignedRelease).
const prefix = te.encode('{"release":"')
export function isSignedRelease (raw) {
  if (raw.length < prefix.length) return false
  for (let i = 0; i < prefix.length; i++) if (raw[i] !== prefix[i]) return false
  return true
}

// Base64 (standard alphabet, padded), as Go's encoding/json writes []byte.
function b64encode (bytes) {
  let s = ''
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  return btoa(s)
}

function b64decode (s, what) {
  let bin
  try {
    bin = atob(s)
  } catch {
    throw new ReleaseError(`malformed signed release: ${what} is not base64`, 'malformed')
  }
  const out = new Uint8Array(bin.length)
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i)
  // atob tolerates whitespace and missing padding; Go's canonical form
  // does not: the caller compares re-encodings.
  return out
}

export { b64encode as base64Encode }
export function base64Decode (s) { return b64decode(s, 'value') }

function concat (parts) {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.length }
  return out
}

function lenPrefixed (b) { return concat([uvarint(b.length), b]) }

// signingBytes is what every maintainer signs for a record.
export function signingBytes (record) {
  return concat([lenPrefixed(te.encode(DomainRelease)), lenPrefixed(te.encode(PayloadRelease)), lenPrefixed(record)])
}

function compareBytes (a, b) {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return a.length - b.length
}

// Go compares strings bytewise (UTF-8); so does this.
function compareStrings (a, b) {
  return compareBytes(te.encode(a), te.encode(b))
}

function isObject (v) { return v != null && typeof v === 'object' && !Array.isArray(v) }

function onlyFields (obj, allowed, err) {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) throw err(`unknown field ${JSON.stringify(k).slice(0, 40)}`)
  }
}

// decodeSignedRelease is protocol.DecodeSignedRelease: canonical JSON,
// shape checked, signatures not verified. Errors are 'malformed'.
export function decodeSignedRelease (raw) {
  const bad = msg => new ReleaseError('malformed signed release: ' + msg, 'malformed')
  let text, obj
  try {
    text = td.decode(raw)
    obj = JSON.parse(text)
  } catch {
    throw bad('not JSON')
  }
  if (!isObject(obj)) throw bad('not an object')
  onlyFields(obj, ['release', 'signatures'], bad)
  if (typeof obj.release !== 'string') throw bad('release is not a string')
  if (!Array.isArray(obj.signatures)) throw bad('signatures is not a list')
  const record = b64decode(obj.release, 'release')
  const sigs = obj.signatures.map(s => {
    if (!isObject(s)) throw bad('signature is not an object')
    onlyFields(s, ['key', 'sig'], bad)
    if (typeof s.key !== 'string' || typeof s.sig !== 'string') throw bad('signature fields are not strings')
    return { key: s.key, sig: b64decode(s.sig, 'sig') }
  })
  const again = '{"release":"' + b64encode(record) + '","signatures":[' +
    sigs.map(s => '{"key":' + goString(s.key) + ',"sig":"' + b64encode(s.sig) + '"}').join(',') + ']}'
  if (again !== text) throw bad('not in canonical encoding')
  if (record.length === 0) throw bad('release is empty')
  if (sigs.length === 0) throw bad('no signatures')
  if (sigs.length > MaxReleaseSignatures) throw bad(`${sigs.length} signatures (limit ${MaxReleaseSignatures})`)
  for (let i = 0; i < sigs.length; i++) {
    const s = sigs[i]
    if (s.key === '') throw bad(`signature ${i} has no key`)
    if (te.encode(s.key).length > MaxStringLen) throw bad(`key longer than ${MaxStringLen} bytes`)
    if (s.sig.length !== Ed25519SignatureSize) throw bad(`signature ${i} is ${s.sig.length} bytes, want ${Ed25519SignatureSize}`)
    if (i > 0) {
      const p = sigs[i - 1]
      const c = compareStrings(p.key, s.key) || compareBytes(p.sig, s.sig)
      if (c > 0) throw bad('signatures not sorted')
    }
  }
  return { record, signatures: sigs }
}

// isAppID is protocol.IsAppID: "app-b" and the unpadded lowercase base32
// of a sha256 digest, with no stray trailing bits.
export function isAppID (s) {
  if (typeof s !== 'string' || s.length !== appIDLen || !s.startsWith(AppIDPrefix)) return false
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  let bits = 0
  let last = 0
  for (const ch of s.slice(AppIDPrefix.length)) {
    const v = alphabet.indexOf(ch)
    if (v < 0) return false
    bits += 5
    last = v
  }
  // 52 characters carry 260 bits: the last 4 must be zero.
  return bits === 260 && (last & 0x0f) === 0
}

function base32Lower (bytes) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  let out = ''
  let acc = 0
  let n = 0
  for (const b of bytes) {
    acc = (acc << 8) | b
    n += 8
    while (n >= 5) {
      out += alphabet[(acc >>> (n - 5)) & 31]
      n -= 5
    }
    acc &= (1 << n) - 1
  }
  if (n > 0) out += alphabet[(acc << (5 - n)) & 31]
  return out
}

// deriveAppID is protocol.DeriveAppID.
export async function deriveAppID (name, set) {
  const keys = [...set.keys].sort(compareStrings)
  const json = '{"name":' + goString(name) + ',"threshold":' + String(set.threshold) + ',"keys":[' + keys.map(goString).join(',') + ']}'
  const d = await sha256.digest(te.encode(json))
  return AppIDPrefix + base32Lower(d.digest)
}

const recordFields = ['app', 'name', 'version', 'cid', 'repo', 'commit', 'build', 'time', 'expires', 'maintainers', 'previous', 'builders']

function encodeSet (s) {
  return '{"keys":[' + s.keys.map(goString).join(',') + '],"threshold":' + String(s.threshold) + '}'
}

// encodeRecord is Go's encoding/json of protocol.Release.
function encodeRecord (r) {
  let out = '{"app":' + goString(r.app) + ',"name":' + goString(r.name) + ',"version":' + String(r.version) + ',"cid":' + goString(r.cid)
  for (const k of ['repo', 'commit', 'build']) {
    if (r[k] != null && r[k] !== '') out += `,"${k}":` + goString(r[k])
  }
  out += ',"time":' + String(r.time) + ',"expires":' + String(r.expires) + ',"maintainers":' + encodeSet(r.maintainers)
  if (r.previous != null) out += ',"previous":' + encodeSet(r.previous)
  if (r.builders != null) out += ',"builders":' + encodeSet(r.builders)
  return out + '}'
}

function checkSetShape (s, name, bad) {
  if (!isObject(s)) throw bad(`${name} is not an object`)
  onlyFields(s, ['keys', 'threshold'], bad)
  if (!Array.isArray(s.keys) || s.keys.some(k => typeof k !== 'string')) throw bad(`${name} keys are not a list of strings`)
  if (!Number.isSafeInteger(s.threshold)) throw bad(`${name} threshold is not an integer`)
}

function validateSet (s, name, bad) {
  if (s.keys.length === 0) throw bad(`${name}: maintainer set has no keys`)
  if (s.keys.length > MaxMaintainers) throw bad(`${name}: ${s.keys.length} keys (limit ${MaxMaintainers})`)
  for (let i = 0; i < s.keys.length; i++) {
    if (s.keys[i] === '') throw bad(`${name}: empty key`)
    if (te.encode(s.keys[i]).length > MaxStringLen) throw bad(`${name}: key longer than ${MaxStringLen} bytes`)
    if (i > 0 && compareStrings(s.keys[i - 1], s.keys[i]) >= 0) throw bad(`${name}: keys not sorted and unique`)
  }
  if (s.threshold < 1 || s.threshold > s.keys.length) throw bad(`${name}: threshold ${s.threshold} outside 1..${s.keys.length}`)
}

// decodeRecord is protocol.DecodeRelease: canonical and valid. Errors are
// 'payload'.
export function decodeRecord (bytes) {
  const bad = msg => new ReleaseError('invalid release record: ' + msg, 'payload')
  if (bytes.length > MaxStatementSize) throw bad(`${bytes.length} bytes`)
  let text, r
  try {
    text = td.decode(bytes)
    r = JSON.parse(text)
  } catch {
    throw bad('not JSON')
  }
  if (!isObject(r)) throw bad('not an object')
  onlyFields(r, recordFields, bad)
  for (const k of ['app', 'name', 'cid']) if (typeof r[k] !== 'string') throw bad(`${k} is not a string`)
  for (const k of ['repo', 'commit', 'build']) if (r[k] != null && typeof r[k] !== 'string') throw bad(`${k} is not a string`)
  for (const k of ['version', 'time', 'expires']) if (!Number.isSafeInteger(r[k])) throw bad(`${k} is not an integer this verifier can hold`)
  if (r.version < 0) throw bad('version is negative')
  checkSetShape(r.maintainers, 'maintainers', bad)
  if ('previous' in r) checkSetShape(r.previous, 'previous', bad)
  if ('builders' in r) checkSetShape(r.builders, 'builders', bad)
  if (encodeRecord(r) !== text) throw new ReleaseError('invalid release record: not in canonical encoding', 'payload')
  if (!isAppID(r.app)) throw bad(`app ${JSON.stringify(r.app).slice(0, 80)} is not an app ID`)
  if (r.name === '') throw bad('name is empty')
  if (r.version === 0) throw bad('version is zero')
  if (r.cid === '') throw bad('cid is empty')
  for (const k of ['name', 'cid', 'repo', 'commit', 'build']) {
    if (r[k] != null && te.encode(r[k]).length > MaxStringLen) throw bad(`${k} longer than ${MaxStringLen} bytes`)
  }
  if (r.time <= 0) throw bad('time is not positive')
  if (r.expires <= r.time) throw bad('expires is not after time')
  validateSet(r.maintainers, 'maintainers', bad)
  if (r.previous != null) validateSet(r.previous, 'previous', bad)
  if (r.builders != null) validateSet(r.builders, 'builders', bad)
  return r
}

// parseKey is attest.ParseKey: an Ed25519 key written as its peer ID, in
// canonical base58 form.
const keyCache = new Map()
export function parseKey (s) {
  const hit = keyCache.get(s)
  if (hit) return hit
  let key
  try {
    const mh = base58btc.baseDecode(s)
    // identity multihash: code 0x00, then the length, then the protobuf key
    if (mh.length < 2 || mh[0] !== 0x00 || mh[1] !== mh.length - 2) throw new Error('not an identity multihash')
    key = publicKeyFromProtobuf(mh.subarray(2))
  } catch (e) {
    throw new ReleaseError(`invalid release record: key ${JSON.stringify(s).slice(0, 80)}: ${e.message}`, 'payload')
  }
  if (key.type !== 'Ed25519') throw new ReleaseError(`key ${s.slice(0, 80)} is not Ed25519`, 'key_type')
  if (key.toString() !== s) throw new ReleaseError(`invalid release record: key ${JSON.stringify(s).slice(0, 80)} is not in canonical form`, 'payload')
  if (keyCache.size > 256) keyCache.clear()
  keyCache.set(s, key)
  return key
}

function has (set, key) { return set != null && set.keys.includes(key) }

// signedBy counts the distinct signers in set.
export function signedBy (rel, set) {
  let n = 0
  for (const k of rel.signers) if (has(set, k)) n++
  return n
}

function setEqual (a, b) {
  return a.threshold === b.threshold && a.keys.length === b.keys.length && a.keys.every((k, i) => k === b.keys[i])
}

// verifyRelease is attest.VerifyRelease. It resolves to { record, signers,
// raw, expired } or throws a ReleaseError. An expired record is returned
// with expired set: it still extends the chain and blocks rollbacks, but is
// never current. If app is given, a record of another app is refused
// (other_app) before any signature is checked.
export async function verifyRelease (raw, nowMs, app = '') {
  if (raw.length > MaxStatementSize) throw new ReleaseError(`signed release of ${raw.length} bytes (limit ${MaxStatementSize})`, 'oversize')
  const s = decodeSignedRelease(raw)
  const record = decodeRecord(s.record)
  if (app !== '' && record.app !== app) throw new ReleaseError(`a release of another app (${record.app})`, 'other_app', 'ignore')
  const sets = [record.maintainers]
  if (record.previous != null) sets.push(record.previous)
  for (const set of sets) for (const k of set.keys) parseKey(k)
  const msg = signingBytes(s.record)
  const signers = new Set()
  for (const sig of s.signatures) {
    if (!has(record.maintainers, sig.key) && !has(record.previous, sig.key)) {
      throw new ReleaseError(`signature by ${sig.key.slice(0, 80)}, who is not a maintainer`, 'unknown_signer')
    }
    if (!(await parseKey(sig.key).verify(msg, sig.sig))) {
      throw new ReleaseError(`release signature by ${sig.key} does not verify`, 'signature')
    }
    signers.add(sig.key)
  }
  const rel = { record, signers: [...signers].sort(compareStrings), raw, expired: false }
  const n = signedBy(rel, record.maintainers)
  if (n < record.maintainers.threshold) {
    throw new ReleaseError(`${n} of ${record.maintainers.threshold} required maintainers signed`, 'threshold')
  }
  if (record.time > nowMs + MaxClockDisparityMs) {
    throw new ReleaseError(`release signed ${record.time - nowMs} ms ahead of now`, 'future', 'ignore')
  }
  rel.expired = nowMs >= record.expires
  return rel
}

// ReleaseBook is internal/release.Book: each app's accepted records.
export class ReleaseBook {
  constructor () { this.apps = new Map() } // app -> { name, current, latest, byVersion }

  // apply adds a verified release (from verifyRelease) or throws the
  // ReleaseError of the chain rule it breaks.
  async apply (rel, nowMs) {
    const rec = rel.record
    if (rec.time > nowMs + MaxClockDisparityMs) throw new ReleaseError('release signed ahead of now', 'future', 'ignore')
    const own = signedBy(rel, rec.maintainers)
    if (own < rec.maintainers.threshold) throw new ReleaseError(`not signed by enough of its own maintainers: ${own} of ${rec.maintainers.threshold}`, 'new_threshold')
    const c = this.apps.get(rec.app)
    if (c == null) {
      const anchor = rec.previous ?? rec.maintainers
      if ((await deriveAppID(rec.name, anchor)) !== rec.app) {
        throw new ReleaseError(`first record seen of ${rec.app} (version ${rec.version}) is not signed by the maintainers its app ID names`, 'not_anchored', 'ignore')
      }
      if (rec.previous != null) {
        const n = signedBy(rel, rec.previous)
        if (n < rec.previous.threshold) throw new ReleaseError(`maintainer change not signed by enough current maintainers: ${n} of ${rec.previous.threshold}`, 'old_threshold')
      }
      const chain = { name: rec.name, current: rec.maintainers, latest: rel, byVersion: new Map() }
      chain.byVersion.set(rec.version, rel)
      this.apps.set(rec.app, chain)
      return
    }
    const latest = c.latest.record.version
    if (rec.version === latest && compareBytes(rel.raw, c.latest.raw) === 0) {
      throw new ReleaseError(`version ${rec.version} already applied`, 'duplicate', 'ignore')
    }
    if (rec.version <= latest) {
      throw new ReleaseError(`version ${rec.version} is not above the current one, ${latest} (rollback)`, 'rollback', 'ignore')
    }
    if (rec.name !== c.name) throw new ReleaseError(`record renames the app from ${JSON.stringify(c.name)}`, 'name_change')
    if (rec.previous != null && !setEqual(rec.previous, c.current)) {
      throw new ReleaseError(`maintainer change of version ${rec.version} does not start from the current maintainer set`, 'unknown_previous', 'ignore')
    }
    if (!setEqual(rec.maintainers, c.current)) {
      if (rec.previous == null) {
        throw new ReleaseError(`version ${rec.version} changes maintainers without naming the previous set`, 'unknown_previous', 'ignore')
      }
      const n = signedBy(rel, c.current)
      if (n < c.current.threshold) throw new ReleaseError(`maintainer change not signed by enough current maintainers: ${n} of ${c.current.threshold}`, 'old_threshold')
    }
    c.latest = rel
    c.current = rec.maintainers
    c.byVersion.set(rec.version, rel)
  }

  // latest returns app's latest accepted release (expired or not), or null.
  latest (app) { return this.apps.get(app)?.latest ?? null }

  get (app, version) { return this.apps.get(app)?.byVersion.get(version) ?? null }

  // raw returns the signed bytes of app's records in version order.
  raw (app) {
    const c = this.apps.get(app)
    if (c == null) return []
    return [...c.byVersion.keys()].sort((a, b) => a - b).map(v => c.byVersion.get(v).raw)
  }
}

// verdictOfRelease maps an outcome to the verdict and reason the Go side
// gives (release.Verdict; reasons as ReleaseError's).
export function verdictOfRelease (err, expired = false) {
  if (err == null) return expired ? { verdict: 'ignore', reason: 'expired' } : { verdict: 'accept', reason: 'ok' }
  if (err instanceof ReleaseError) return { verdict: err.verdict, reason: err.reason }
  return { verdict: 'reject', reason: 'malformed' }
}

// addRelease verifies raw and applies it to book: the verdict of the
// whole step ({ verdict, reason, error?, rel? }). An expired record that
// the chain accepts is applied and reported as ignore/expired.
export async function addRelease (book, raw, nowMs, app = '') {
  let rel
  try {
    rel = await verifyRelease(raw, nowMs, app)
    await book.apply(rel, nowMs)
  } catch (e) {
    const v = verdictOfRelease(e)
    v.error = e.message
    return v
  }
  const v = verdictOfRelease(null, rel.expired)
  v.rel = rel
  return v
}

// addAll applies raws in version order, as release.Book.ApplyAll does (the
// order of a statements stream or a config need not be the chain's).
export async function addAll (book, raws, nowMs, app = '') {
  const decoded = raws.map((raw, i) => {
    let version = Infinity
    try { version = decodeRecord(decodeSignedRelease(raw).record).version } catch {}
    return { raw, i, version }
  })
  decoded.sort((a, b) => a.version - b.version || a.i - b.i)
  const out = new Array(raws.length)
  for (const d of decoded) out[d.i] = await addRelease(book, d.raw, nowMs, app)
  return out
}
