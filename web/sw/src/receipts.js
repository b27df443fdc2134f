// Delivery receipts from the browser, as the Go light client signs them
// (package client, SendReceipts): per mirror that delivered verified bytes,
// a receipt "mirror M delivered B verified bytes of CID to me at T" signed
// with the worker's own Ed25519 key, kept in IndexedDB so that it
// outlives the worker (the ledger caps what one client key counts for).
// Receipts are batched and posted to two mirrors' /mirrornet/v1/receipts:
// each receipt must reach a witness other than the mirror it credits.
//
// A receipt is a signed envelope exactly as attest.SignReceipt makes it:
// the protobuf envelope (public_key=1, payload_type=2, payload=3,
// signature=5), payload type "/mirrornet/receipt/1", domain
// "mirrornet-receipt", payload the JSON Go's encoding/json writes for
// protocol.Receipt.

import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { uvarint, goString } from './statements.js'

export const DomainReceipt = 'mirrornet-receipt'
export const PayloadReceipt = '/mirrornet/receipt/1'
export const ReceiptsPath = '/mirrornet/v1/receipts'
export const MaxReceiptsPerPost = 64
// A batch waits this long after the first unreported delivery, so that a
// page and its assets go in one post.
export const BatchDelayMs = 2_000
// Witnesses is how many mirrors a batch is posted to.
export const Witnesses = 2

const te = new TextEncoder()

function concat (parts) {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let o = 0
  for (const p of parts) { out.set(p, o); o += p.length }
  return out
}

function lenPrefixed (b) { return concat([uvarint(b.length), b]) }

// encodeReceipt is protocol.Encode(&Receipt{...}).
export function encodeReceipt (r) {
  return '{"client":' + goString(r.client) + ',"seq":' + String(r.seq) + ',"time":' + String(r.time) +
    ',"mirror":' + goString(r.mirror) + ',"cid":' + goString(r.cid) + ',"bytes":' + String(r.bytes) + '}'
}

// signReceipt is attest.SignReceipt: r.client must be key's peer ID.
export async function signReceipt (key, r) {
  const payload = te.encode(encodeReceipt(r))
  const type = te.encode(PayloadReceipt)
  const signature = await key.sign(concat([lenPrefixed(te.encode(DomainReceipt)), lenPrefixed(type), lenPrefixed(payload)]))
  const parts = []
  for (const [field, v] of [[1, publicKeyToProtobuf(key.publicKey)], [2, type], [3, payload], [5, signature]]) {
    parts.push(uvarint(field * 8 + 2), lenPrefixed(v))
  }
  return concat(parts)
}

// loadClientKey reads the worker's key from IndexedDB, or makes and keeps
// one.
export async function loadClientKey () {
  const db = await new Promise((resolve, reject) => {
    const req = indexedDB.open('mirrornet-receipts', 1)
    req.onupgradeneeded = () => req.result.createObjectStore('keys')
    req.onsuccess = () => resolve(req.result)
    req.onerror = () => reject(req.error)
  })
  const get = () => new Promise((resolve, reject) => {
    const r = db.transaction('keys').objectStore('keys').get('client')
    r.onsuccess = () => resolve(r.result)
    r.onerror = () => reject(r.error)
  })
  let raw = await get()
  if (raw == null) {
    const k = await generateKeyPair('Ed25519')
    // add, not put: a second worker racing to make its key keeps the first.
    await new Promise(resolve => {
      const tx = db.transaction('keys', 'readwrite')
      tx.objectStore('keys').add(privateKeyToProtobuf(k), 'client')
      tx.oncomplete = resolve
      tx.onerror = e => { e.preventDefault(); resolve() }
      tx.onabort = resolve
    })
    raw = await get()
  }
  db.close()
  return privateKeyFromProtobuf(new Uint8Array(raw))
}

// Receipts reports a pool's verified deliveries (m.bytes per mirror, with
// m.peer from its signed liveness statement) as signed receipts.
export class Receipts {
  constructor () {
    this.reported = new Map() // mirror URL -> bytes already in a receipt
    this.timer = null
    this.pending = null
    this.seq = 0
    this.sent = 0 // receipts accepted by at least one witness
    this.witnessed = [] // URLs of mirrors that accepted the last batch
    this.last = [] // the last batch, base64
    this.error = ''
    this.client = ''
  }

  // schedule sends a batch BatchDelayMs from now unless one is due; the
  // promise settles when it has been sent (for event.waitUntil).
  schedule (pool, root) {
    if (this.pending == null) {
      this.pending = new Promise(resolve => {
        this.timer = setTimeout(() => {
          this.pending = null
          this.send(pool, root).catch(e => { this.error = e.message }).finally(resolve)
        }, BatchDelayMs)
      })
    }
    return this.pending
  }

  async send (pool, root) {
    const ms = [...pool.mirrors.values()].filter(m => m.peer)
    const due = ms.filter(m => m.bytes > (this.reported.get(m.url) ?? 0))
    if (due.length === 0) return
    this.key ??= await loadClientKey()
    const client = this.key.publicKey.toString()
    this.client = client
    const now = Date.now()
    this.seq = Math.max(this.seq + 1, now * 1000)
    const batch = []
    const claimed = new Map()
    for (const m of due.slice(0, MaxReceiptsPerPost)) {
      if (m.peer === client) continue
      const bytes = m.bytes - (this.reported.get(m.url) ?? 0)
      batch.push(await signReceipt(this.key, { client, seq: this.seq++, time: now, mirror: m.peer, cid: root.toString(), bytes }))
      claimed.set(m.url, m.bytes)
    }
    if (batch.length === 0) return
    const body = concat([...batch.map(lenPrefixed), uvarint(0)])
    // Those that delivered most first, then the other usable mirrors.
    const order = [...ms].sort((a, b) => (b.bytes - a.bytes) || (a.url < b.url ? -1 : 1)).filter(m => m.usable || m.bytes > 0)
    const ok = []
    let lastErr = ''
    for (const m of order) {
      if (ok.length >= Witnesses) break
      try {
        const resp = await fetch(m.url + ReceiptsPath, { method: 'POST', body, headers: { 'Content-Type': 'application/octet-stream' }, cache: 'no-store' })
        if (resp.status === 202) ok.push(m.url)
        else lastErr = `${m.url}: HTTP ${resp.status}`
      } catch (e) {
        lastErr = `${m.url}: ${e.message}`
      }
    }
    if (ok.length === 0) throw new Error(`receipts not accepted (${lastErr})`)
    for (const [u, n] of claimed) this.reported.set(u, n)
    this.sent += batch.length
    this.witnessed = ok
    this.last = batch.map(b => btoa(String.fromCharCode(...b)))
    this.error = ''
  }

  status () {
    return { client: this.client, sent: this.sent, witnesses: this.witnessed, last: this.last, error: this.error }
  }
}
