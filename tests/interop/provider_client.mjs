// synapse-core's own PDP client against a provider: ping, uploadPiece (one shot),
// uploadPieceStreaming (from a stream, piece CID computed on the way), findPiece, and
// Piece.downloadAndValidate from /piece/. Exits non-zero on the first failure.
// Usage: node provider_client.mjs SERVICE_URL
import './polyfill.mjs'
import { randomBytes } from 'node:crypto'
import * as SP from '@filoz/synapse-core/sp'
import * as Piece from '@filoz/synapse-core/piece'

const serviceURL = process.argv[2].replace(/\/?$/, '/')
const step = (what) => console.log(`ok ${what}`)

await SP.ping(serviceURL)
step('ping')

const one = new Uint8Array(randomBytes(300_000))
const oneCid = Piece.calculate(one)
await SP.uploadPiece({ serviceURL, data: one, pieceCid: oneCid })
step(`uploadPiece ${oneCid}`)
// the same piece again: the provider has it (200, no upload)
await SP.uploadPiece({ serviceURL, data: one, pieceCid: oneCid })
step('uploadPiece again')

const two = new Uint8Array(randomBytes(3 * 1024 * 1024 + 17))
const streamed = await SP.uploadPieceStreaming({ serviceURL, data: new Blob([two]).stream(), size: two.length })
if (streamed.pieceCid.toString() !== Piece.calculate(two).toString()) throw new Error('streamed piece CID differs')
step(`uploadPieceStreaming ${streamed.pieceCid}`)

for (const [cid, bytes] of [[oneCid, one], [streamed.pieceCid, two]]) {
  const found = await SP.findPiece({ serviceURL, pieceCid: cid })
  if (found.toString() !== cid.toString()) throw new Error(`findPiece gave ${found}`)
  step(`findPiece ${cid}`)
  const url = Piece.createPieceUrlPDP({ cid: cid.toString(), serviceURL })
  const got = await Piece.downloadAndValidate({ url, expectedPieceCid: cid })
  if (Buffer.compare(Buffer.from(got), Buffer.from(bytes)) !== 0) throw new Error('downloaded bytes differ')
  step(`downloadAndValidate ${cid}`)
}

// a piece the provider does not hold is not found
const absent = Piece.calculate(new Uint8Array(randomBytes(1000)))
let refused = false
try { await SP.findPiece({ serviceURL, pieceCid: absent }) } catch { refused = true }
if (!refused) throw new Error('findPiece found a piece never uploaded')
step('findPiece refuses an absent piece')

// Data sets, signed by a viem wallet (its RPC is never reached) for the provider's payee:
// create, wait, add pieces, wait, read the data set back, schedule a removal.
const payee = process.argv[3]
if (payee) {
  const { createWalletClient, http } = await import('viem')
  const { privateKeyToAccount } = await import('viem/accounts')
  const { calibration } = await import('@filoz/synapse-core/chains')
  const account = privateKeyToAccount(process.argv[4])
  const client = createWalletClient({ account, chain: calibration, transport: http('http://127.0.0.1:9') })
  const clientDataSetId = 77n
  const created = await SP.createDataSet(client, { serviceURL, payee, clientDataSetId, metadata: {} })
  const ds = await SP.waitForCreateDataSet({ statusUrl: created.statusUrl, pollInterval: 200 })
  step(`createDataSet ${ds.dataSetId}`)
  const added = await SP.addPieces(client, {
    serviceURL, dataSetId: ds.dataSetId, clientDataSetId,
    pieces: [{ pieceCid: oneCid }, { pieceCid: streamed.pieceCid }],
  })
  const confirmed = await SP.waitForAddPieces({ statusUrl: added.statusUrl, pollInterval: 200 })
  if (confirmed.confirmedPieceIds.length !== 2) throw new Error('two pieces added')
  step(`addPieces ${confirmed.confirmedPieceIds}`)
  const got = await SP.getDataSet({ serviceURL, dataSetId: ds.dataSetId })
  if (got.pieces.length !== 2 || got.pieces[0].pieceCid.toString() !== oneCid.toString()) throw new Error('getDataSet')
  step('getDataSet')
  const removed = await SP.schedulePieceDeletion(client, {
    serviceURL, dataSetId: ds.dataSetId, clientDataSetId, pieceId: confirmed.confirmedPieceIds[0],
  })
  if (!removed.hash.startsWith('0x')) throw new Error('schedulePieceDeletion gave no tx hash')
  const after = await SP.getDataSet({ serviceURL, dataSetId: ds.dataSetId })
  if (after.pieces.length !== 1) throw new Error('the removed piece is still listed')
  step('schedulePieceDeletion')
  // a stranger's signature on the same data set is refused
  const stranger = createWalletClient({
    account: privateKeyToAccount('0x' + '11'.repeat(32)), chain: calibration, transport: http('http://127.0.0.1:9'),
  })
  let refused = false
  try {
    await SP.addPieces(stranger, { serviceURL, dataSetId: ds.dataSetId, clientDataSetId, pieces: [{ pieceCid: oneCid }] })
  } catch (e) { refused = String(e?.message ?? e).includes('signed by') }
  if (!refused) throw new Error('a stranger added pieces')
  step('a stranger is refused')
}
