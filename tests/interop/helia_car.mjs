// Helia, a real third-party IPFS implementation, reading and writing CAR files for cidfs's
// interop tests. No networking: createHeliaLight has no libp2p.
//
//   node helia_car.mjs check FILE.car
//       imports the CAR into a fresh Helia and prints, for every entry under each root,
//       "path<TAB>type<TAB>size<TAB>sha256-hex" (directories: "-"; symlinks: their target)
//   node helia_car.mjs make INPUT_FILE OUT.car
//       adds the file with Kubo's defaults (CIDv0, dag-pb leaves, 256 KiB chunks, 174
//       links), exports its DAG as a CAR and prints the root CID
import './polyfill.mjs'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import { Readable } from 'node:stream'
import { createHeliaLight } from 'helia'
import { car } from '@helia/car'
import { unixfs } from '@helia/unixfs'
import { CarReader } from '@ipld/car'
import { exporter } from 'ipfs-unixfs-exporter'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

const opts = () => ({ signal: AbortSignal.timeout(60_000), offline: true })

async function walk (fsys, cid, path, out) {
  const st = await fsys.stat(cid, opts())
  // Helia's exporter reports a UnixFS symlink as a 'file'; its UnixFS type tells the truth.
  const entry = await exporter(cid, helia.blockstore, opts())
  if (entry.type === 'file' && entry.unixfs.type === 'symlink') {
    out.push(`${path}\tsymlink\t-\t${new TextDecoder().decode(entry.unixfs.data)}`)
  } else if (st.type === 'directory') {
    out.push(`${path}\tdir\t-\t-`)
    for await (const e of fsys.ls(cid, opts())) await walk(fsys, e.cid, path === '' ? e.name : `${path}/${e.name}`, out)
  } else if (st.type === 'file' || st.type === 'raw') {
    const h = createHash('sha256')
    for await (const buf of fsys.cat(cid, opts())) h.update(buf)
    out.push(`${path}\tfile\t${st.size}\t${h.digest('hex')}`)
  } else {
    out.push(`${path}\t${st.type}\t-\t-`)
  }
}

const [cmd, a, b] = process.argv.slice(2)
const helia = createHeliaLight()
await helia.start()
try {
  if (cmd === 'check') {
    const reader = await CarReader.fromIterable(fs.createReadStream(a))
    const roots = await reader.getRoots()
    await car(helia).import(reader, opts())
    const fsys = unixfs(helia)
    for (const root of roots) {
      const out = []
      await walk(fsys, root, '', out)
      console.log(`root\t${root}`)
      for (const line of out) console.log(line)
    }
  } else if (cmd === 'make') {
    const fsys = unixfs(helia)
    const cid = await fsys.addByteStream(Readable.from(fs.createReadStream(a)), {
      cidVersion: 0, rawLeaves: false, chunker: fixedSize({ chunkSize: 262144 }), layout: balanced({ maxChildrenPerNode: 174 })
    })
    const file = fs.createWriteStream(b)
    for await (const buf of car(helia).export(cid, opts())) {
      if (!file.write(buf)) await new Promise((resolve) => file.once('drain', resolve))
    }
    await new Promise((resolve, reject) => file.end((err) => err ? reject(err) : resolve()))
    console.log(cid.toString())
  } else {
    throw new Error(`unknown command ${cmd}`)
  }
} finally {
  await helia.stop()
}
