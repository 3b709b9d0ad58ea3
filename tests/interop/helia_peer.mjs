// Helia as a networked IPFS peer for cidfs's interop tests: libp2p over TCP on 127.0.0.1
// only (no bootstrap, no DHT, no mDNS), bitswap as the only block broker.
//
//   node helia_peer.mjs serve FILE
//       adds FILE with Kubo's defaults (CIDv0, dag-pb leaves, 256 KiB chunks, 174 links),
//       prints one JSON line {"cid": ..., "addrs": [...]} and serves its blocks until
//       stdin closes
//   node helia_peer.mjs fetch CID MULTIADDR OUT
//       dials MULTIADDR, reads the UnixFS file CID over bitswap into OUT, prints
//       {"bytes": n, "ms": total, "first_byte_ms": t}
import './polyfill.mjs'
import fs from 'node:fs'
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

if (cmd === 'serve') {
  const cid = await fsys.addByteStream(Readable.from(fs.createReadStream(a)), {
    cidVersion: 0, rawLeaves: false, chunker: fixedSize({ chunkSize: 262144 }), layout: balanced({ maxChildrenPerNode: 174 })
  })
  const addrs = helia.libp2p.getMultiaddrs().map(m => m.toString())
  console.log(JSON.stringify({ cid: cid.toString(), addrs }))
  process.stdin.resume()
  await new Promise(resolve => process.stdin.on('end', resolve).on('close', resolve))
} else if (cmd === 'fetch') {
  const start = performance.now()
  await helia.libp2p.dial(multiaddr(b), { signal: AbortSignal.timeout(30_000) })
  const out = fs.createWriteStream(c)
  let bytes = 0
  let firstByte = null
  for await (const buf of fsys.cat(CID.parse(a), { signal: AbortSignal.timeout(120_000) })) {
    firstByte ??= performance.now() - start
    bytes += buf.length
    if (!out.write(buf)) await new Promise(resolve => out.once('drain', resolve))
  }
  await new Promise(resolve => out.end(resolve))
  console.log(JSON.stringify({ bytes, ms: performance.now() - start, first_byte_ms: firstByte }))
} else {
  console.error('usage: helia_peer.mjs serve FILE | fetch CID MULTIADDR OUT')
  process.exitCode = 2
}
await helia.stop()
