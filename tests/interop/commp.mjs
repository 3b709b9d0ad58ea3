// Piece CIDs of files as the reference implementations compute them, one line per file:
// `v2 v1 padded_size` — v2 from @filoz/synapse-core/piece `calculate` (FRC-0069), v1 and
// the padded size from @web3-storage/data-segment `Piece.fromPayload(...).toInfo()`.
// Usage: node commp.mjs FILE...
import { readFileSync } from 'node:fs'
import './polyfill.mjs'
import { calculate } from '@filoz/synapse-core/piece'
import { Piece } from '@web3-storage/data-segment'

for (const file of process.argv.slice(2)) {
  const bytes = new Uint8Array(readFileSync(file))
  const v2 = calculate(bytes)
  const info = Piece.fromPayload(bytes).toInfo()
  console.log(`${v2.toString()} ${info.link.toString()} ${info.size}`)
}
