// The worker's mirror pool: which mirrors hold the app (from verified
// statements), how fast each answers, which were dropped and why; and the
// Helia block broker that races, hedges and fails over between them.

import { CarBlockIterator } from '@ipld/car/iterator'
import { FrameReader, HealthView, HoldingsContentType, HoldingsPath, MaxHoldingsSize, StatementsContentType, StatementsPath, normalizeHTTP, verifyHoldings } from './statements.js'
import { isSignedRelease } from './releases.js'

// Caps and timings. The statement caps are the Go light client's
// (client.DefaultOptions): at most MaxSources mirrors asked for statements,
// statements at most MaxAgeMs old, each download bounded by ProbeTimeoutMs.
export const MaxSources = 8
export const MaxAgeMs = 30_000
export const ProbeTimeoutMs = 5_000
// A statements stream is at most this many bytes (the protocol allows
// MaxSyncStatements frames; a browser has no use for more than this).
export const MaxStatementsBytes = 8 << 20
// MaxBlockSize is the trustless gateway's block limit (client.MaxBlockSize).
export const MaxBlockSize = 2 << 20
// HedgeDelayMs: a block request to a mirror with no latency sample is
// hedged to the next mirror after this long; with samples, after
// HedgeFactor times its average, never below HedgeFloorMs.
export const HedgeDelayMs = 250
export const HedgeFactor = 3
export const HedgeFloorMs = 25
// StallMs: a response that delivers no byte for this long is abandoned
// and its mirror dropped.
export const StallMs = 3_000
// SoftDropMs: a mirror dropped for an error that may pass (unreachable,
// stalled, 5xx) is tried again after this long; one that sent wrong bytes
// or says it does not hold the app is not, until the worker restarts.
export const SoftDropMs = 15_000
// RefreshMs: statements older than this are refreshed in the background.
export const RefreshMs = 10_000

export class NoMirrorError extends Error {
  constructor (msg, tried) {
    super(msg)
    this.name = 'NoMirrorError'
    this.tried = tried
  }
}

// readBounded reads a fetch Response body, at most max bytes, abandoning
// it when no byte arrives for stallMs. onChunk, if set, sees each chunk.
export async function readBounded (resp, max, stallMs, signal, onChunk) {
  const reader = resp.body.getReader()
  const chunks = []
  let n = 0
  try {
    for (;;) {
      let timer
      const stall = new Promise((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`stalled: no byte for ${stallMs} ms`)), stallMs)
      })
      let r
      try {
        r = await Promise.race([reader.read(), stall])
      } finally {
        clearTimeout(timer)
      }
      signal?.throwIfAborted()
      if (r.done) break
      n += r.value.length
      if (n > max) throw new Error(`over budget: more than ${max} bytes`)
      if (onChunk) onChunk(r.value)
      else chunks.push(r.value)
    }
  } catch (e) {
    reader.cancel().catch(() => {})
    throw e
  }
  const out = new Uint8Array(n)
  let o = 0
  for (const c of chunks) { out.set(c, o); o += c.length }
  return out
}

export class Pool {
  // root: the app's CID string (null until an app host's release is
  // verified); seeds: mirror URLs to start from; log: console-like; now:
  // () => Unix ms; onRelease(raw, source): called, and awaited, with each
  // signed release record a statements stream carries (they travel next
  // to liveness statements), for the caller to verify.
  constructor ({ root, seeds = [], log = console, now = Date.now, fetchFn = (...a) => fetch(...a), secureOnly = false, onRelease = null }) {
    this.root = root
    this.onRelease = onRelease
    this.log = log
    this.now = now
    this.fetch = fetchFn
    this.secureOnly = secureOnly
    this.view = new HealthView()
    this.seeds = []
    this.mirrors = new Map() // url -> mirror record
    this.events = [] // what happened, newest last (status page)
    this.sources = new Map() // url -> { at, got, rejected, err }
    this.lastRefresh = 0
    this.refreshing = null
    this.badURLs = new Set() // statements whose URL was reported
    this.holdingsAsked = new Set() // 'peer digest root' asked already
    this.addSeeds(seeds)
  }

  // resolveHoldings reads and verifies the holdings statements of the
  // mirrors whose statements name their holdings by digest only (once
  // per mirror, digest and root), so the view can say whether they hold
  // the root. Only the answer is kept, never the list.
  async resolveHoldings (root = this.root) {
    if (root == null) return
    const asks = []
    for (const need of this.view.needHoldings(root, this.now(), MaxAgeMs)) {
      const key = need.peer + ' ' + need.digest + ' ' + root
      if (this.holdingsAsked.has(key) || !this.acceptableScheme(need.url)) continue
      if (this.holdingsAsked.size >= 4096) this.holdingsAsked.clear()
      this.holdingsAsked.add(key)
      asks.push(this.fetchHoldings(need, root))
    }
    await Promise.all(asks)
  }

  async fetchHoldings (need, root) {
    const ctl = new AbortController()
    const timer = setTimeout(() => ctl.abort(new Error(`no answer in ${ProbeTimeoutMs} ms`)), ProbeTimeoutMs)
    let held = false
    try {
      const resp = await this.fetch(need.url + HoldingsPath, { signal: ctl.signal, cache: 'no-store', headers: { Accept: HoldingsContentType }, credentials: 'omit' })
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`)
      const raw = await readBounded(resp, MaxHoldingsSize, ProbeTimeoutMs, ctl.signal)
      const list = await verifyHoldings(raw, need.peer, need.digest)
      held = list.includes(root)
    } catch (e) {
      this.skip(`holdings of ${need.url}: ${e.message ?? e}`)
    } finally {
      clearTimeout(timer)
    }
    this.view.setHolds(need.peer, need.digest, root, held)
  }

  note (what) {
    this.events.push({ at: this.now(), what })
    if (this.events.length > 200) this.events.shift()
  }

  addSeeds (urls) {
    for (const s of urls) {
      let u
      try {
        u = normalizeHTTP(s)
      } catch (e) {
        this.skip(`skipping seed mirror: ${e.message}`)
        continue
      }
      if (!this.acceptableScheme(u)) continue
      if (!this.seeds.includes(u)) this.seeds.push(u)
    }
  }

  acceptableScheme (u) {
    if (this.secureOnly && u.startsWith('http:')) {
      this.skip(`skipping mirror ${u}: plain http from a secure origin would be blocked as mixed content`)
      return false
    }
    return true
  }

  mirror (url) {
    let m = this.mirrors.get(url)
    if (m == null) {
      m = { url, peer: '', version: '', usable: false, ewmaMs: 0, samples: 0, inflight: 0, served: 0, bytes: 0, dropped: null }
      this.mirrors.set(url, m)
    }
    return m
  }

  drop (url, reason, hard) {
    const m = this.mirror(url)
    m.dropped = { reason, hard, at: this.now() }
    this.note(`dropped ${url}: ${reason}`)
    this.log.warn(`mirrornet: dropped mirror ${url}: ${reason}`)
  }

  isDropped (m) {
    if (m.dropped == null) return false
    if (!m.dropped.hard && this.now() - m.dropped.at > SoftDropMs) {
      m.dropped = null
      return false
    }
    return true
  }

  // candidates: usable, not dropped, fastest first (no sample counts as
  // HedgeDelayMs), fewest requests in flight breaking ties.
  candidates () {
    const out = []
    for (const m of this.mirrors.values()) {
      if (m.usable && !this.isDropped(m)) out.push(m)
    }
    const cost = m => (m.samples > 0 ? m.ewmaMs : HedgeDelayMs) * (1 + m.inflight)
    out.sort((a, b) => cost(a) - cost(b) || (a.url < b.url ? -1 : 1))
    return out
  }

  // fetchStatements reads one source's statements into the view. As in
  // the Go client, statements read before a stream error are still used
  // (each is verified on its own); the error drops the source.
  async fetchStatements (src) {
    const ctl = new AbortController()
    const timer = setTimeout(() => ctl.abort(new Error(`no answer in ${ProbeTimeoutMs} ms`)), ProbeTimeoutMs)
    const rec = { at: this.now(), got: 0, rejected: 0, other: 0, releases: 0, err: '' }
    this.sources.set(src, rec)
    const raws = []
    let failure = null
    try {
      const resp = await this.fetch(src + StatementsPath, { signal: ctl.signal, cache: 'no-store', headers: { Accept: StatementsContentType }, credentials: 'omit' })
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`)
      const fr = new FrameReader()
      await readBounded(resp, MaxStatementsBytes, ProbeTimeoutMs, ctl.signal, chunk => { raws.push(...fr.push(chunk)) })
      if (!fr.done) throw new Error('statement stream ended without its end frame')
    } catch (e) {
      failure = e
      rec.err = e.message ?? String(e)
      this.skip(`statements from ${src}: ${rec.err}`)
    } finally {
      clearTimeout(timer)
    }
    const now = this.now()
    for (const raw of raws) {
      if (isSignedRelease(raw)) {
        rec.releases++
        if (this.onRelease != null) await this.onRelease(raw, src)
        continue
      }
      rec.got++
      const err = await this.view.add(src, raw, now)
      if (err != null && err.reason === 'kind') {
        // Statements of kinds the worker does not use (probe results,
        // suspicions, ...) arrive on every refresh: counted, not reported
        // (as events they would push everything else off the status page).
        rec.other++
        continue
      }
      if (err != null) {
        rec.rejected++
        this.skip(`skipping a statement from ${src}: ${err.message}`)
      }
    }
    if (failure) throw failure
  }

  // skip reports bad input: a console message and an event on the
  // status page; it counts toward nothing else.
  skip (msg) {
    this.log.warn('mirrornet: ' + msg)
    this.note(msg)
  }

  // setRoot changes the CID the pool serves (an app host's new release):
  // mirrors are usable when their statements list it.
  setRoot (root) {
    if (root === this.root) return
    this.root = root
    this.note(`now serving ${root}`)
    this.applyView()
    this.resolveHoldings().then(() => this.applyView())
  }

  // holders counts the mirrors whose fresh statements list root. The
  // holdings statements of mirrors that name theirs by digest are read in
  // the background: a later call counts them.
  holders (root) {
    this.resolveHoldings(root).catch(() => {})
    return this.view.usable(root, this.now(), MaxAgeMs).filter(u => !(this.secureOnly && u.url.startsWith('http:'))).length
  }

  // applyView recomputes which mirrors are usable for the root.
  applyView () {
    const now = this.now()
    if (this.root == null) return
    const usable = this.view.usable(this.root, now, MaxAgeMs, (st, e) => {
      if (this.badURLs.has(st.signer + st.liveness.seq)) return
      this.badURLs.add(st.signer + st.liveness.seq)
      this.skip(`skipping mirror ${st.signer}: ${e.message}`)
    })
    const set = new Set()
    for (const u of usable) {
      if (!this.acceptableScheme(u.url)) continue
      set.add(u.url)
      const m = this.mirror(u.url)
      m.peer = u.peer
      m.version = u.version
      if (!m.usable) this.note(`usable: ${u.url} (${u.peer.slice(-8)}, ${u.version})`)
      m.usable = true
    }
    for (const m of this.mirrors.values()) {
      if (m.usable && !set.has(m.url)) {
        m.usable = false
        this.note(`not usable: ${m.url}: ${this.view.statusOf(m.url, this.root, now, MaxAgeMs)}`)
      }
    }
  }

  // refresh asks up to MaxSources mirrors (usable ones first, then seeds)
  // for statements. It resolves once the first source has answered and
  // the others have had a short grace, or all have failed.
  refresh () {
    if (this.refreshing) return this.refreshing
    const sources = []
    for (const m of this.candidates()) if (!sources.includes(m.url)) sources.push(m.url)
    for (const s of this.seeds) if (!sources.includes(s)) sources.push(s)
    for (const m of this.mirrors.values()) if (!sources.includes(m.url) && !m.dropped?.hard) sources.push(m.url)
    const picked = sources.slice(0, MaxSources)
    this.refreshing = new Promise(resolve => {
      let pending = picked.length
      let graceTimer = null
      let finished = false
      const finish = () => {
        clearTimeout(graceTimer)
        if (finished) return
        finished = true
        // Mirrors that name their holdings by digest are usable once
        // their holdings statements are verified.
        this.resolveHoldings().finally(() => {
          this.applyView()
          this.lastRefresh = this.now()
          this.refreshing = null
          resolve()
        })
      }
      if (pending === 0) { finish(); return }
      for (const src of picked) {
        this.fetchStatements(src).then(() => {
          this.applyView()
          if (finished) this.resolveHoldings().then(() => this.applyView())
          if (graceTimer == null) graceTimer = setTimeout(finish, 100)
        }, (e) => {
          const m = this.mirrors.get(src)
          if (m != null && !this.isDropped(m)) this.drop(src, `statements: ${e.message ?? e}`, false)
        }).finally(() => {
          if (--pending === 0) finish()
        })
      }
    })
    return this.refreshing
  }

  // ready makes sure there are usable mirrors: with none, or with
  // statements older than RefreshMs, it refreshes (waiting only when
  // nothing is usable).
  async ready () {
    const stale = this.now() - this.lastRefresh > RefreshMs
    if (this.candidates().length > 0) {
      if (stale) this.refresh()
      return
    }
    await this.refresh()
    if (this.candidates().length === 0 && !stale) {
      // Everything known was dropped; statements may name others.
      await this.refresh()
    }
  }

  tried () {
    const out = []
    for (const m of this.mirrors.values()) {
      out.push({ url: m.url, reason: m.dropped?.reason ?? (m.usable ? 'usable' : this.view.statusOf(m.url, this.root, this.now(), MaxAgeMs)) })
    }
    for (const s of this.seeds) {
      if (!this.mirrors.has(s)) out.push({ url: s, reason: this.sources.get(s)?.err || 'no statement' })
    }
    return out
  }

  noMirror (what) {
    const tried = this.tried()
    const list = tried.map(t => `${t.url} (${t.reason})`).join('; ')
    return new NoMirrorError(`no mirror delivered verified ${what}; tried: ${list || 'none known'}`, tried)
  }

  served (m, bytes, ms) {
    m.served++
    m.bytes += bytes
    m.ewmaMs = m.samples === 0 ? ms : 0.7 * m.ewmaMs + 0.3 * ms
    m.samples++
  }

  // race runs attempt(mirror, signal) on the best mirror, hedges to the
  // next when that one is slow, and moves on at once when a mirror fails,
  // stalls or sends a wrong byte (attempt throws; err.hard marks errors
  // that drop the mirror for good). The first attempt to succeed wins and
  // the others are aborted. attempt resolves to { value, bytes }.
  race (what, signal, attempt) {
    return new Promise((resolve, reject) => {
      const asked = new Set()
      const ctls = new Set()
      let inflight = 0
      let settled = false
      let hedgeTimer = null
      const finish = (err, value) => {
        if (settled) return
        settled = true
        clearTimeout(hedgeTimer)
        for (const c of ctls) c.abort()
        signal?.removeEventListener('abort', onAbort)
        if (err) reject(err)
        else resolve(value)
      }
      const onAbort = () => finish(signal.reason ?? new Error('aborted'))
      signal?.addEventListener('abort', onAbort)
      const next = () => {
        if (settled) return
        clearTimeout(hedgeTimer)
        const m = this.candidates().find(m => !asked.has(m.url))
        if (m == null) {
          if (inflight === 0) finish(this.noMirror(what))
          return
        }
        asked.add(m.url)
        inflight++
        m.inflight++
        const ctl = new AbortController()
        ctls.add(ctl)
        const start = performance.now()
        hedgeTimer = setTimeout(next, m.samples > 0 ? Math.max(HedgeFloorMs, HedgeFactor * m.ewmaMs) : HedgeDelayMs)
        attempt(m, ctl.signal).then(r => {
          if (settled) return
          this.served(m, r.bytes, performance.now() - start)
          finish(null, { value: r.value, mirror: m })
        }, e => {
          if (!settled) {
            this.drop(m.url, e.message, e.hard === true)
            next()
          }
        }).finally(() => {
          inflight--
          m.inflight--
          ctls.delete(ctl)
          if (!settled && inflight === 0 && this.candidates().every(c => asked.has(c.url))) {
            finish(this.noMirror(what))
          }
        })
      }
      next()
    })
  }

  // retrieve fetches one block over ?format=raw, verified by validate
  // (which throws on a block that does not match its CID), racing mirrors.
  async retrieve (cid, { signal, validate }) {
    await this.ready()
    const key = cid.toString()
    const r = await this.race(`block ${key}`, signal, async (m, s) => {
      const block = await this.fetchBlock(m, key, s, validate)
      return { value: block, bytes: block.length }
    })
    return r.value
  }

  // fetchCAR fetches the DAG under cid as one CAR (dag-scope=all) in one
  // request, racing mirrors. The CAR's first block must be the root; once
  // it is verified, budgetOf(rootBytes) gives the byte budget the DAG
  // itself declares (its links' sizes). Every block is verified against
  // its CID as it arrives (verify throws otherwise) and only then passed
  // to put; a CAR over its budget is cut off and its mirror dropped. A DAG
  // that declares more than maxBudget is not fetched whole: the CAR stops
  // after the root (resolves with whole=false) and the rest goes block by
  // block. Resolves to { mirror, whole }.
  async fetchCAR (cid, budgetOf, maxBudget, verify, put) {
    await this.ready()
    const r = await this.race(`CAR of ${cid}`, null, (m, s) => this.carFrom(m, cid, budgetOf, maxBudget, verify, put, s))
    return { mirror: r.mirror, whole: r.value }
  }

  async carFrom (m, cid, budgetOf, maxBudget, verify, put, signal) {
    const key = cid.toString()
    let resp
    try {
      resp = await this.fetch(`${m.url}/ipfs/${key}?format=car&dag-scope=all`, {
        signal, cache: 'no-store', credentials: 'omit', headers: { Accept: 'application/vnd.ipld.car' }
      })
    } catch (e) {
      throw new Error(`unreachable: ${e.message ?? e}`)
    }
    if (!resp.ok) {
      resp.body?.cancel()
      throw Object.assign(new Error(`CAR: HTTP ${resp.status}`), { hard: resp.status === 404 })
    }
    let n = 0
    // Until the root is in, the budget is one block and a header.
    let budget = MaxBlockSize + 1024
    const overBudget = b => {
      throw Object.assign(new Error(`CAR over its declared budget of ${b} bytes: cut off`), { hard: true })
    }
    const body = resp.body.pipeThrough(new TransformStream({
      transform (chunk, c) {
        n += chunk.length
        if (n > budget) {
          c.error(Object.assign(new Error(`CAR over its declared budget of ${budget} bytes: cut off`), { hard: true }))
          return
        }
        c.enqueue(chunk)
      }
    }))
    let blocks = 0
    let whole = true
    try {
      const it = await CarBlockIterator.fromIterable(iterate(body, StallMs, signal))
      const roots = await it.getRoots()
      if (roots.length !== 1 || !roots[0].equals(cid)) throw Object.assign(new Error('CAR: wrong root'), { hard: true })
      for await (const { cid: c, bytes } of it) {
        if (blocks === 0 && !c.equals(cid)) throw Object.assign(new Error('CAR: first block is not the root'), { hard: true })
        try {
          await verify(c, bytes)
        } catch (e) {
          throw Object.assign(new Error(`CAR block ${c} does not match its CID: rejected`), { hard: true })
        }
        await put(c, bytes)
        blocks++
        if (blocks === 1) {
          const declared = budgetOf(bytes)
          if (declared > maxBudget) {
            whole = false
            break
          }
          budget = declared
        }
        // Bytes may have arrived ahead of the parser, before the root
        // set the budget: check what has arrived so far, every block.
        if (n > budget) overBudget(budget)
      }
      if (whole && n > budget) overBudget(budget)
    } catch (e) {
      if (e.hard) throw e
      throw Object.assign(new Error(`CAR: ${e.message ?? e}`), { hard: /budget/.test(e.message ?? '') })
    }
    if (blocks === 0) throw Object.assign(new Error('CAR: no blocks'), { hard: true })
    m.served += Math.max(0, blocks - 1)
    return { value: whole, bytes: n }
  }

  async fetchBlock (m, key, signal, validate) {
    let resp
    try {
      resp = await this.fetch(`${m.url}/ipfs/${key}?format=raw`, {
        signal, cache: 'no-store', credentials: 'omit', headers: { Accept: 'application/vnd.ipld.raw' }
      })
    } catch (e) {
      throw new Error(`unreachable: ${e.message ?? e}`)
    }
    if (resp.status === 404 || resp.status === 410 || resp.status === 412) {
      resp.body?.cancel()
      throw Object.assign(new Error(`does not hold ${key} (HTTP ${resp.status})`), { hard: true })
    }
    if (!resp.ok) {
      resp.body?.cancel()
      throw new Error(`HTTP ${resp.status}`)
    }
    const len = Number(resp.headers.get('content-length') ?? 0)
    if (len > MaxBlockSize) {
      resp.body?.cancel()
      throw Object.assign(new Error(`declares ${len} bytes for one block (limit ${MaxBlockSize})`), { hard: true })
    }
    let block
    try {
      block = await readBounded(resp, MaxBlockSize, StallMs, signal)
    } catch (e) {
      throw Object.assign(new Error(e.message), { hard: /over budget/.test(e.message) })
    }
    try {
      await validate(block)
    } catch (e) {
      throw Object.assign(new Error(`block ${key} does not match its CID (${block.length} bytes): rejected`), { hard: true })
    }
    return block
  }
}

// iterate turns a ReadableStream into an async iterable, failing when no
// chunk arrives for stallMs.
async function * iterate (stream, stallMs, signal) {
  const reader = stream.getReader()
  try {
    for (;;) {
      signal?.throwIfAborted()
      let timer
      const stall = new Promise((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`stalled: no byte for ${stallMs} ms`)), stallMs)
      })
      let r
      try {
        r = await Promise.race([reader.read(), stall])
      } finally {
        clearTimeout(timer)
      }
      if (r.done) return
      yield r.value
    }
  } finally {
    reader.cancel().catch(() => {})
  }
}
