// A mirrornet peer in JavaScript (js-libp2p + @libp2p/gossipsub), written
// from protocol/'s package doc. Two modes, both printing JSON lines:
//
//   node peer.mjs vectors FILE
//     one {"name","verdict","reason"} line per test vector in FILE
//     (protocol/testdata/statements.json), judged by statement.mjs.
//
//   node peer.mjs join MULTIADDR
//     dials the mirror at MULTIADDR (ending in /p2p/PEER-ID), joins the
//     statement topics, verifies every liveness statement it receives
//     ("statement" lines), and once the mirror's own statement has been
//     verified publishes one valid liveness statement of its own and one
//     forged one ("published" line), then keeps publishing valid ones
//     (rising seq) every second until stdin closes.
import './polyfill.mjs'
import { readFileSync } from 'node:fs'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@libp2p/gossipsub'
import { multiaddr } from '@multiformats/multiaddr'
import { verifyStatement, newKey, signLiveness, sha256 } from './statement.mjs'

const TOPICS = ['/mirrornet/liveness/2', '/mirrornet/probe/2', '/mirrornet/release/1', '/mirrornet/build/1']
const say = obj => process.stdout.write(JSON.stringify(obj) + '\n')

async function vectors (path) {
  const file = JSON.parse(readFileSync(path, 'utf8'))
  for (const v of file.vectors) {
    const r = verifyStatement(Buffer.from(v.statement, 'hex'), v.now)
    say({ name: v.name, verdict: r.verdict, reason: r.reason, detail: r.detail })
  }
}

async function join (addr) {
  const target = multiaddr(addr)
  const mirrorId = addr.split('/p2p/')[1]
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub({
        // The spec: no gossipsub signature, author or seqno; message ID
        // is SHA-256 of the data.
        globalSignaturePolicy: 'StrictNoSign',
        msgIdFn: msg => sha256(msg.data),
        floodPublish: true,
        emitSelf: false
      })
    }
  })
  const ps = node.services.pubsub
  const valid = newKey()
  const forger = newKey()
  let seq = Date.now()
  let published = false

  const statement = (ok) => {
    const key = ok ? valid : forger
    seq++
    const raw = signLiveness(key, {
      peer: key.peerId, state: 'up', seq, time: Date.now(),
      addrs: [], http: '', bundles: [], version: 'jspeer/0.1'
    })
    if (!ok) raw[raw.length - 5] ^= 0x01 // inside the signature
    return raw
  }
  const publishValid = async () => {
    try {
      await ps.publish(TOPICS[0], statement(true))
    } catch (e) {
      say({ event: 'error', error: String(e) })
    }
  }

  // Our own code decides every liveness statement's fate.
  ps.topicValidators.set(TOPICS[0], (from, msg) => {
    const r = verifyStatement(msg.data, Date.now())
    say({ event: 'statement', from: from.toString(), signer: r.signer, verdict: r.verdict, reason: r.reason, detail: r.detail, has_from: msg.type === 'signed' })
    if (r.verdict === 'accept' && r.signer === mirrorId && !published) {
      published = true
      setImmediate(async () => {
        await publishValid()
        try {
          await ps.publish(TOPICS[0], statement(false))
        } catch (e) {
          say({ event: 'error', error: String(e) })
        }
        say({ event: 'published', valid: valid.peerId, forged: forger.peerId })
      })
    }
    return r.verdict === 'accept' ? 'accept' : r.verdict === 'ignore' ? 'ignore' : 'reject'
  })
  for (const t of TOPICS) ps.subscribe(t)
  await node.dial(target)
  say({ event: 'ready', peer_id: node.peerId.toString(), mirror: mirrorId })

  const timer = setInterval(() => { if (published) publishValid() }, 1000)
  process.stdin.resume()
  await new Promise(resolve => process.stdin.on('end', resolve))
  clearInterval(timer)
  await node.stop()
}

const [mode, arg] = process.argv.slice(2)
if (mode === 'vectors') {
  await vectors(arg)
} else if (mode === 'join') {
  await join(arg)
} else {
  process.stderr.write('usage: node peer.mjs vectors FILE | join MULTIADDR\n')
  process.exit(2)
}
process.exit(0)
