// Helia as a networked IPFS peer for cidfs's interop tests: libp2p over TCP on 127.0.0.1
// only (no bootstrap, no DHT, no mDNS), bitswap as the only block broker.
//
//   node helia_peer.mjs serve FILE
//       adds FILE with Kubo's defaults (CIDv0, dag-pb leaves, 256 KiB chunks, 174 links),
//       prints one JSON line {"cid": ..., "addrs": [...]} and serves its blocks until
//       stdin closes
//   node helia_peer.mjs gateway FILE
//       adds FILE the same way and serves its blocks from Helia's blockstore over HTTP as
//       a trustless gateway (GET /ipfs/{cid}?format=raw or Accept:
//       application/vnd.ipld.raw; 404 for blocks it lacks), on 127.0.0.1, until stdin
//       closes; a second server, "liar", answers every block with one byte changed.
//       Prints {"cid": ..., "url": "http://127.0.0.1:PORT", "liar": "http://...",
//       "addrs": [...]} (it serves the blocks over bitswap too)
//   node helia_peer.mjs fetch CID MULTIADDR OUT
//       dials MULTIADDR, reads the UnixFS file CID over bitswap into OUT, prints
//       {"bytes": n, "ms": total, "first_byte_ms": t}
//   node helia_peer.mjs fetch-when-told
//       prints {"peer": its peer ID} (so the other side can trust it), then reads one line
//       "CID MULTIADDR OUT" from stdin and fetches as `fetch` does
import './polyfill.mjs'
import fs from 'node:fs'
import http from 'node:http'
import { Readable } from 'node:stream'
import { createHeliaLight } from 'helia'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import { unixfs } from '@helia/unixfs'
import { tcp } from '@libp2p/tcp'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

const helia = withBitswap(withLibp2pLight(createHeliaLight({ routers: [] }), {
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), ping: ping() }
}))
await helia.start()
const fsys = unixfs(helia)
const [cmd, a, b, c] = process.argv.slice(2)

const addKuboStyle = file => fsys.addByteStream(Readable.from(fs.createReadStream(file)), {
  cidVersion: 0, rawLeaves: false, chunker: fixedSize({ chunkSize: 262144 }), layout: balanced({ maxChildrenPerNode: 174 })
})
const untilStdinCloses = () => {
  process.stdin.resume()
  return new Promise(resolve => process.stdin.on('end', resolve).on('close', resolve))
}

// One trustless-gateway request: the raw block from the local blockstore, or an error.
async function answer (req, res, lie) {
  const url = new URL(req.url, 'http://gateway')
  const m = url.pathname.match(/^\/ipfs\/([^/]+)$/)
  const raw = url.searchParams.get('format') === 'raw' || (req.headers.accept ?? '').includes('application/vnd.ipld.raw')
  if (req.method !== 'GET' || m == null || !raw) {
    res.writeHead(400).end('only GET /ipfs/{cid}?format=raw\n')
    return
  }
  let cid
  try { cid = CID.parse(m[1]) } catch { res.writeHead(400).end('bad CID\n'); return }
  if (!(await helia.blockstore.has(cid))) {
    res.writeHead(404).end('not found\n')
    return
  }
  let bytes = new Uint8Array(0)
  for await (const chunk of helia.blockstore.get(cid, { offline: true })) {
    const all = new Uint8Array(bytes.length + chunk.length)
    all.set(bytes)
    all.set(chunk, bytes.length)
    bytes = all
  }
  if (lie) bytes = Uint8Array.from(bytes, (x, i) => i === bytes.length - 1 ? x ^ 1 : x)
  res.writeHead(200, { 'content-type': 'application/vnd.ipld.raw', 'content-length': bytes.length })
  res.end(bytes)
}
function gatewayServer (lie) {
  const server = http.createServer((req, res) => {
    answer(req, res, lie).catch(e => { res.writeHead(500).end(String(e)) })
  })
  return new Promise(resolve => server.listen(0, '127.0.0.1', () => resolve(server)))
}

if (cmd === 'serve') {
  const cid = await addKuboStyle(a)
  const addrs = helia.libp2p.getMultiaddrs().map(m => m.toString())
  console.log(JSON.stringify({ cid: cid.toString(), addrs }))
  await untilStdinCloses()
} else if (cmd === 'gateway') {
  const cid = await addKuboStyle(a)
  const honest = await gatewayServer(false)
  const liar = await gatewayServer(true)
  const url = s => `http://127.0.0.1:${s.address().port}`
  const addrs = helia.libp2p.getMultiaddrs().map(m => m.toString())
  console.log(JSON.stringify({ cid: cid.toString(), url: url(honest), liar: url(liar), addrs }))
  await untilStdinCloses()
  honest.close()
  liar.close()
} else if (cmd === 'fetch' || cmd === 'fetch-when-told') {
  let [cid, addr, outPath] = [a, b, c]
  if (cmd === 'fetch-when-told') {
    console.log(JSON.stringify({ peer: helia.libp2p.peerId.toString() }))
    const line = await new Promise(resolve => {
      let buf = ''
      process.stdin.on('data', d => { buf += d; if (buf.includes('\n')) resolve(buf.split('\n')[0]) })
    })
    ;[cid, addr, outPath] = line.trim().split(' ')
    process.stdin.pause()
  }
  const start = performance.now()
  await helia.libp2p.dial(multiaddr(addr), { signal: AbortSignal.timeout(30_000) })
  const out = fs.createWriteStream(outPath)
  let bytes = 0
  let firstByte = null
  for await (const buf of fsys.cat(CID.parse(cid), { signal: AbortSignal.timeout(120_000) })) {
    firstByte ??= performance.now() - start
    bytes += buf.length
    if (!out.write(buf)) await new Promise(resolve => out.once('drain', resolve))
  }
  await new Promise(resolve => out.end(resolve))
  console.log(JSON.stringify({ bytes, ms: performance.now() - start, first_byte_ms: firstByte }))
} else {
  console.error('usage: helia_peer.mjs serve FILE | gateway FILE | fetch CID MULTIADDR OUT | fetch-when-told')
  process.exitCode = 2
}
await helia.stop()
