// FWSS extraData as @filoz/synapse-core/typed-data signs it, for the same key and inputs
// the Rust side uses. The wallet client's RPC is never reached: typed data signs offline.
// Usage: node fwss_sign.mjs '{"key":"0x…","chain":314159,"payee":"0x…","clientDataSetId":"7",
//   "metadata":[["k","v"]],"nonce":"99","pieces":[["bafkzcib…",[["k","v"]]]],"pieceIds":["4"]}'
// Prints JSON: {"address","create","add","removals"} (hex).
import './polyfill.mjs'
import { createWalletClient, http } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { calibration, mainnet } from '@filoz/synapse-core/chains'
import { signCreateDataSet, signAddPieces, signSchedulePieceRemovals } from '@filoz/synapse-core/typed-data'
import { CID } from 'multiformats/cid'

const input = JSON.parse(process.argv[2])
const chain = input.chain === 314 ? mainnet : calibration
const account = privateKeyToAccount(input.key)
const client = createWalletClient({ account, chain, transport: http('http://127.0.0.1:9') })
const meta = (kv) => kv.map(([key, value]) => ({ key, value }))

const create = await signCreateDataSet(client, {
  clientDataSetId: BigInt(input.clientDataSetId),
  payee: input.payee,
  metadata: meta(input.metadata),
})
const add = await signAddPieces(client, {
  clientDataSetId: BigInt(input.clientDataSetId),
  nonce: BigInt(input.nonce),
  pieces: input.pieces.map(([cid, kv]) => ({ pieceCid: CID.parse(cid), metadata: meta(kv) })),
})
const removals = await signSchedulePieceRemovals(client, {
  clientDataSetId: BigInt(input.clientDataSetId),
  pieceIds: input.pieceIds.map(BigInt),
})
console.log(JSON.stringify({ address: account.address, create, add, removals }))
