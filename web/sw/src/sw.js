// mirrornet's verifying service worker. Every mirror serves it on every app
// origin ({cid}.ipfs.<host> and --app hosts) at /.mirrornet/sw.js; the
// mirror's bootstrap page registers it on the first visit. From then on it
// answers every same-origin request of the app itself: it learns which
// mirrors hold the app from signed statements (statements.js), fetches
// blocks and CARs from them over the trustless gateway, verifies every
// byte against the CID (Helia, through @helia/verified-fetch), races and
// hedges, and moves to another mirror on error, stall or a wrong byte
// (mirrors.js). The origin never changes, so the app's storage survives
// any failover. Nothing unverified reaches the page: a response is built
// only from verified blocks and is given to the page whole, or not at all.

import { createHeliaLight } from 'helia'
// VerifiedFetch is imported from its module rather than the package
// index, whose createVerifiedFetch would also bundle libp2p, bitswap and
// WebRTC, none of which the worker uses.
import { VerifiedFetch } from '../node_modules/@helia/verified-fetch/dist/src/verified-fetch.js'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { CID } from 'multiformats/cid'
import { base36 } from 'multiformats/bases/base36'
import { sha256 } from 'multiformats/hashes/sha2'
import * as dagPB from '@ipld/dag-pb'
import { Pool, NoMirrorError } from './mirrors.js'
import { verifyStatement, verdictOf } from './statements.js'
import { ReleaseBook, addRelease, addAll, base64Decode, base64Encode, isAppID } from './releases.js'
import { statusPage, errorPage } from './pages.js'
import { Receipts } from './receipts.js'

// MaxResponseBytes: a response is assembled in full before the page sees
// any of it (fail closed: never partial content), so it is bounded.
const MaxResponseBytes = 256 << 20
// MaxCARBudget: a navigation prefetches the whole app as one CAR when the
// root's links declare at most this many bytes; larger apps go block by
// block.
const MaxCARBudget = 16 << 20
const CacheName = 'mirrornet-v1'
const ConfigURL = '/.mirrornet/config.json'
const KnownURL = '/.mirrornet/known.json'
// ReleasesURL persists, on an app host, the app this worker serves (pinned
// when it installed), the signed release records it verified (so that an
// older record is refused after a restart too) and the version it serves.
const ReleasesURL = '/.mirrornet/releases.json'
// MaxKeptReleases bounds the records persisted and taken from a config.
const MaxKeptReleases = 256

const log = console

// The root comes from the origin: {cid}.ipfs.<host> names it (the user
// opened that CID); on an app host it is the release the installing
// mirror verified, kept in the worker's config.
function rootFromHost (hostname) {
  const labels = hostname.split('.')
  if (labels.length >= 3 && labels[1] === 'ipfs') {
    try {
      return labels[0].startsWith('k') ? CID.parse(labels[0], base36) : CID.parse(labels[0])
    } catch (e) {
      log.warn(`mirrornet: origin label ${labels[0]} is not a CID: ${e.message}`)
    }
  }
  return null
}

async function readCached (url) {
  try {
    const c = await caches.open(CacheName)
    const r = await c.match(url)
    return r ? await r.json() : null
  } catch {
    return null
  }
}

async function writeCached (url, value) {
  try {
    const c = await caches.open(CacheName)
    await c.put(url, new Response(JSON.stringify(value), { headers: { 'Content-Type': 'application/json' } }))
  } catch (e) {
    log.warn(`mirrornet: could not persist ${url}: ${e.message}`)
  }
}

async function fetchConfig () {
  const r = await fetch(ConfigURL, { cache: 'no-store' })
  if (!r.ok) throw new Error(`config: HTTP ${r.status}`)
  const cfg = await r.json()
  await writeCached(ConfigURL, cfg)
  return cfg
}

let statePromise = null

// state builds the worker's pool and Helia once per worker start, from the
// persisted config (fetched from the origin on install).
function state () {
  if (statePromise == null) {
    statePromise = init().catch(e => { statePromise = null; throw e })
  }
  return statePromise
}

async function init () {
  let cfg = await readCached(ConfigURL)
  if (cfg == null) cfg = await fetchConfig()
  let root = rootFromHost(self.location.hostname)
  const cidOrigin = root != null
  // An app host's release is the one its maintainers signed, verified
  // here: never the root the mirror's config names.
  let releases = null
  if (!cidOrigin) {
    releases = await AppReleases.open(cfg.app)
    await releases.add(configReleases(cfg), 'the origin')
  }
  const known = (await readCached(KnownURL)) ?? []
  const seeds = [...(Array.isArray(cfg.seeds) ? cfg.seeds : []), ...(Array.isArray(known) ? known : [])]
  const pool = new Pool({
    root: root?.toString() ?? null,
    seeds,
    log,
    secureOnly: self.location.protocol === 'https:',
    onRelease: releases ? (raw, src) => releases.addOne(raw, src) : null
  })
  if (releases) releases.attach(pool)
  pool.note(`worker started; seeds: ${pool.seeds.join(', ') || 'none'}`)
  if (releases) {
    // Nothing verified from the origin: ask the mirrors, whose statement
    // streams carry the release records they hold.
    if (releases.current() == null) await pool.refresh()
    const cur = releases.current()
    if (cur == null) {
      throw new Error(`no release record of app ${releases.app} verifies (signed by a threshold of its maintainers, ` +
        `anchored in its app ID, not older than one seen before)${releases.lastRejection ? ': ' + releases.lastRejection : ''}`)
    }
    root = CID.parse(cur.record.cid)
    await releases.serve(cur)
    if (cfg.root && cfg.root !== root.toString()) {
      pool.note(`the origin names ${cfg.root} as the app's release; the verified release ${cur.record.version} is ${root}`)
    }
    pool.setRoot(root.toString())
  }
  if (root == null) throw new Error('this origin names no app (no {cid}.ipfs. label and no configured root)')

  const blockstore = new MemoryBlockstore()
  const broker = {
    name: 'mirrornet',
    retrieve: (cid, options = {}) => pool.retrieve(cid, {
      signal: options.signal,
      validate: options.validateFn ?? (async block => verifyBlock(cid, block))
    })
  }
  const helia = createHeliaLight({ blockstore, blockBrokers: [broker], routers: [] })
  await helia.start()
  const vf = new VerifiedFetch(helia)
  const verifiedFetch = (resource, options) => vf.fetch(resource, options)
  const st = { cfg, root, cidOrigin, releases, pool, blockstore, verifiedFetch, served: null, lastError: null, started: Date.now() }
  return st
}

function configReleases (cfg) {
  if (!Array.isArray(cfg.releases)) return []
  const out = []
  for (const r of cfg.releases.slice(-MaxKeptReleases)) {
    try {
      out.push(base64Decode(String(r)))
    } catch {
      log.warn('mirrornet: skipping a release record in the config that is not base64')
    }
  }
  return out
}

// AppReleases is an app host's chain of verified release records and the
// release this worker serves, persisted in the worker's cache.
class AppReleases {
  // open pins the app: the one persisted at install, else the one the
  // installing config names.
  static async open (cfgApp) {
    const saved = await readCached(ReleasesURL)
    const app = saved?.app ?? cfgApp
    if (!isAppID(app)) throw new Error(`this origin names no app (config app ${JSON.stringify(String(cfgApp ?? '')).slice(0, 80)})`)
    const r = new AppReleases(app)
    if (saved == null) {
      await r.persist()
    } else {
      if (cfgApp != null && cfgApp !== app) log.warn(`mirrornet: the origin now names app ${cfgApp}; this worker serves ${app}, pinned when it installed`)
      const raws = []
      for (const b of Array.isArray(saved.records) ? saved.records : []) {
        try { raws.push(base64Decode(String(b))) } catch {}
      }
      await r.add(raws, 'the worker\'s cache')
      r.serving = Number(saved.serving) || 0
    }
    return r
  }

  constructor (app) {
    this.app = app
    this.book = new ReleaseBook()
    this.serving = 0 // version
    this.rejected = 0
    this.lastRejection = ''
    this.pool = null
    this.early = [] // events before the pool exists
    this.seen = new Set() // records already applied or refused (base64)
  }

  attach (pool) {
    this.pool = pool
    for (const e of this.early) pool.note(e)
    this.early = []
  }

  event (msg) {
    if (this.pool) this.pool.note(msg)
    else this.early.push(msg)
  }

  note (msg) {
    this.event(msg)
    log.warn('mirrornet: ' + msg)
  }

  // fresh drops records this worker has already judged: a statements
  // stream repeats the whole chain on every refresh.
  fresh (raws) {
    const out = []
    for (const raw of raws) {
      const k = base64Encode(raw)
      if (this.seen.has(k)) continue
      if (this.seen.size > 1024) this.seen.clear()
      this.seen.add(k)
      out.push(raw)
    }
    return out
  }

  // add verifies raws (in version order) and applies those that extend
  // the chain; records that break a rule are named on the console and the
  // status page and change nothing.
  async add (raws, source) {
    raws = this.fresh(raws)
    if (raws.length === 0) return
    const res = await addAll(this.book, raws, Date.now(), this.app)
    let changed = false
    for (const v of res) changed = this.record(v, source) || changed
    if (changed) await this.persist()
  }

  async addOne (raw, source) {
    if (this.fresh([raw]).length === 0) return
    if (this.record(await addRelease(this.book, raw, Date.now(), this.app), source)) await this.persist()
  }

  record (v, source) {
    if (v.rel != null) {
      this.event(`verified release ${v.rel.record.version} of the app (${v.rel.record.cid}) from ${source}, signed by ${v.rel.signers.length} maintainer(s)${v.reason === 'expired' ? '; it has expired' : ''}`)
      return true
    }
    if (v.reason === 'other_app' || v.reason === 'duplicate') return false
    if (v.verdict === 'reject') {
      this.rejected++
      this.lastRejection = `${source}: ${v.error}`
    }
    this.note(`refused a release record from ${source}: ${v.error}`)
    return false
  }

  latest () { return this.book.latest(this.app) }

  // current is the release served: the one chosen before, else the latest.
  current () { return this.book.get(this.app, this.serving) ?? this.latest() }

  async serve (rel) {
    if (this.serving === rel.record.version) return
    this.serving = rel.record.version
    await this.persist()
  }

  persist () {
    return writeCached(ReleasesURL, {
      app: this.app,
      records: this.book.raw(this.app).slice(-MaxKeptReleases).map(base64Encode),
      serving: this.serving
    })
  }
}

// advance moves an app host to its latest verified release once a mirror
// lists it as held; called at the start of a navigation, so a page and its
// resources always come from one release.
async function advance (st) {
  const r = st.releases
  const latest = r?.latest()
  if (latest == null || latest.record.version <= r.serving) return
  if (st.pool.holders(latest.record.cid) === 0) {
    st.pool.note(`release ${latest.record.version} is verified; waiting for a mirror to hold ${latest.record.cid}`)
    return
  }
  let next
  try {
    next = CID.parse(latest.record.cid)
  } catch (e) {
    st.pool.note(`release ${latest.record.version} names ${latest.record.cid}, which is not a CID`)
    return
  }
  st.pool.note(`moving to release ${latest.record.version} (${next})`)
  st.root = next
  st.pool.setRoot(next.toString())
  await r.serve(latest)
}

// followRelease: an app host's release changes over time. On each
// navigation the worker asks the origin for its config again (in the
// background) and verifies the release records in it; mirrors' statement
// streams bring records too. A newer verified release is served from the
// next navigation on. Whatever the config says about the root changes
// nothing, and an origin that does not answer changes nothing either.
async function followRelease (st) {
  try {
    const ctl = new AbortController()
    const timer = setTimeout(() => ctl.abort(), 3000)
    const r = await fetch(ConfigURL, { cache: 'no-store', signal: ctl.signal })
    clearTimeout(timer)
    if (!r.ok) return
    const cfg = await r.json()
    await st.releases.add(configReleases(cfg), 'the origin')
  } catch (e) {
    log.warn(`mirrornet: could not check the app's current release: ${e.message ?? e}`)
  }
}

async function verifyBlock (cid, bytes) {
  if (cid.multihash.code !== sha256.code) throw new Error(`unsupported hash 0x${cid.multihash.code.toString(16)}`)
  const d = await sha256.digest(bytes)
  const want = cid.multihash.digest
  if (d.digest.length !== want.length || d.digest.some((b, i) => b !== want[i])) throw new Error('hash mismatch')
}

// freshLoad starts a navigation from nothing: blocks held from earlier
// loads are forgotten, so every page load proves that a mirror can still
// deliver (all mirrors gone means the error page, never stale content).
// The app comes as one CAR when its root's links declare a small enough
// DAG (one request); otherwise, or if no mirror sends a good CAR, Helia
// asks for blocks one at a time.
async function freshLoad (st) {
  st.blockstore.data.clear()
  const pool = st.pool
  await pool.ready()
  if (st.releases) await advance(st)
  if (st.root.code !== dagPB.code) return
  const budgetOf = rootBytes => {
    let budget = rootBytes.length + 1024
    for (const l of dagPB.decode(rootBytes).Links) budget += (l.Tsize ?? Infinity) + 128
    return budget
  }
  try {
    const r = await pool.fetchCAR(st.root, budgetOf, MaxCARBudget, verifyBlock, (c, b) => st.blockstore.put(c, b))
    pool.note(`${r.whole ? 'CAR' : 'root (app too large for one CAR)'} of ${st.root} from ${r.mirror.url}`)
  } catch (e) {
    if (e instanceof NoMirrorError) throw e
    log.warn(`mirrornet: whole-app CAR failed, going block by block: ${e.message}`)
  }
}

function html (body, status) {
  return new Response(body, { status, headers: { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' } })
}

function statusJSON (st) {
  const mirrors = [...st.pool.mirrors.values()].map(m => ({
    url: m.url,
    peer: m.peer,
    version: m.version,
    usable: m.usable,
    served_blocks: m.served,
    served_bytes: m.bytes,
    avg_ms: Math.round(m.ewmaMs * 10) / 10,
    dropped: m.dropped ? m.dropped.reason : ''
  }))
  const sources = [...st.pool.sources.entries()].map(([url, s]) => ({ url, statements: s.got, rejected: s.rejected, other_kinds: s.other, releases: s.releases, error: s.err }))
  const r = st.releases
  const cur = r?.current()
  return {
    root: st.root.toString(),
    verified: st.served != null,
    app: r?.app ?? '',
    release_version: cur?.record.version ?? 0,
    release_latest: r?.latest()?.record.version ?? 0,
    release_signers: cur?.signers ?? [],
    release_threshold: cur?.record.maintainers.threshold ?? 0,
    release_expired: cur != null && Date.now() >= cur.record.expires,
    releases_rejected: r?.rejected ?? 0,
    origin: self.location.origin,
    worker_started: new Date(st.started).toISOString(),
    last_error: st.lastError ?? '',
    mirrors,
    sources,
    events: st.pool.events.slice(-50).map(e => ({ at: new Date(e.at).toISOString(), what: e.what })),
    receipts: st.receipts?.status() ?? null
  }
}

async function handle (event) {
  const req = event.request
  const url = new URL(req.url)
  let st
  try {
    st = await state()
  } catch (e) {
    return html(errorPage({ origin: self.location.origin, root: '', error: `the worker could not start: ${e.message}`, tried: [] }), 502)
  }
  if (url.pathname === '/.mirrornet/verify' && req.method === 'POST') {
    return selfCheck(req, url)
  }
  if (url.pathname === '/.mirrornet/verify-release' && req.method === 'POST') {
    return selfCheckReleases(req, url)
  }
  if (url.pathname === '/.mirrornet/' || url.pathname === '/.mirrornet') {
    if (url.searchParams.get('format') === 'json') {
      return new Response(JSON.stringify(statusJSON(st), null, 1), { headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' } })
    }
    return html(statusPage(statusJSON(st)), 200)
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return new Response('mirrornet: apps are read-only\n', { status: 405 })
  }
  const navigate = req.mode === 'navigate'
  if (navigate && !st.cidOrigin) event.waitUntil(followRelease(st))
  try {
    if (navigate) await freshLoad(st)
    const headers = {}
    const accept = req.headers.get('accept')
    if (accept && !navigate) headers.accept = accept
    const range = req.headers.get('range')
    if (range) headers.range = range
    const resp = await st.verifiedFetch(`ipfs://${st.root}${url.pathname}${url.search}`, { headers, session: false, redirect: 'manual', method: req.method })
    if (resp.status >= 300 && resp.status < 400) {
      // verified-fetch redirects directory paths to their slash form
      // with an ipfs:// or gateway URL; keep the app's own origin.
      const loc = resp.headers.get('location')
      if (loc != null) {
        const target = new URL(loc, url)
        const path = target.protocol === 'ipfs:' ? target.pathname.replace(/^\/\/[^/]+/, '') : target.pathname
        return Response.redirect(new URL(path + target.search, self.location.origin).href, resp.status === 308 ? 308 : 301)
      }
    }
    if (resp.status >= 500) {
      const text = await resp.text().catch(() => '')
      throw new NoMirrorError(text.slice(0, 500) || `HTTP ${resp.status}`, st.pool.tried())
    }
    // Assemble the whole body before answering: a block that fails
    // halfway makes this throw, and the page gets the error page instead
    // of a truncated file.
    const body = req.method === 'HEAD' ? null : await readAll(resp)
    const out = new Headers(resp.headers)
    out.set('Cache-Control', 'no-store')
    out.delete('content-length')
    if (resp.ok) st.served = Date.now()
    if (resp.ok) event.waitUntil((st.receipts ??= new Receipts()).schedule(st.pool, st.root))
    return new Response(body, { status: resp.status, statusText: resp.statusText, headers: out })
  } catch (e) {
    st.lastError = e.message
    log.warn(`mirrornet: ${url.pathname}: ${e.message}`)
    const tried = e.tried ?? st.pool.tried()
    if (navigate || (req.headers.get('accept') ?? '').includes('text/html')) {
      return html(errorPage({ origin: self.location.origin, root: st.root.toString(), error: e.message, tried }), 502)
    }
    return new Response(`mirrornet: no mirror delivered verified bytes for ${url.pathname}: ${e.message}\n`, { status: 502, headers: { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' } })
  } finally {
    persistKnown(st)
  }
}

// selfCheck answers POST /.mirrornet/verify?now=UNIX-MS with the verdict
// this worker gives the statement in the body, so anyone (and the
// protocol's test vectors) can check the browser verifies exactly as the
// spec says. Pure: it touches no state.
async function selfCheck (req, url) {
  const body = new Uint8Array(await req.arrayBuffer())
  const now = Number(url.searchParams.get('now') ?? Date.now())
  let err = null
  try {
    await verifyStatement(body, now)
  } catch (e) {
    err = e
  }
  const v = verdictOf(err)
  if (err) v.error = err.message
  return new Response(JSON.stringify(v), { headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' } })
}

// selfCheckReleases answers POST /.mirrornet/verify-release?now=UNIX-MS
// (body: a JSON list of base64 signed releases) with the verdict of each
// record, applied in the order given to an empty book, and the latest
// release the book then holds: the release rules, checkable against the
// Go implementation. Pure: it touches no state.
async function selfCheckReleases (req, url) {
  const now = Number(url.searchParams.get('now') ?? Date.now())
  const book = new ReleaseBook()
  const out = []
  let list = []
  try {
    list = await req.json()
  } catch {}
  for (const b of Array.isArray(list) ? list : []) {
    let raw
    try {
      raw = base64Decode(String(b))
    } catch (e) {
      out.push({ verdict: 'reject', reason: 'malformed', error: e.message })
      continue
    }
    const v = await addRelease(book, raw, now)
    if (v.rel) out.push({ verdict: v.verdict, reason: v.reason, version: v.rel.record.version, app: v.rel.record.app })
    else out.push(v)
  }
  return new Response(JSON.stringify({ results: out }), { headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' } })
}

async function readAll (resp) {
  if (resp.body == null) return null
  const reader = resp.body.getReader()
  const chunks = []
  let n = 0
  for (;;) {
    const r = await reader.read()
    if (r.done) break
    n += r.value.length
    if (n > MaxResponseBytes) {
      reader.cancel().catch(() => {})
      throw new Error(`response over ${MaxResponseBytes} bytes`)
    }
    chunks.push(r.value)
  }
  return new Blob(chunks)
}

let persisted = ''
function persistKnown (st) {
  const urls = [...st.pool.mirrors.values()].filter(m => m.usable && !m.dropped?.hard).map(m => m.url).sort()
  const s = JSON.stringify(urls)
  if (urls.length === 0 || s === persisted) return
  persisted = s
  writeCached(KnownURL, urls)
}

self.addEventListener('install', event => {
  event.waitUntil(fetchConfig().then(() => self.skipWaiting()))
})

self.addEventListener('activate', event => {
  event.waitUntil(self.clients.claim())
})

self.addEventListener('fetch', event => {
  const url = new URL(event.request.url)
  if (url.origin !== self.location.origin) return // the app's own calls elsewhere
  if (url.pathname === '/.mirrornet/sw.js' || url.pathname === ConfigURL) return // from the mirror
  event.respondWith(handle(event))
})
