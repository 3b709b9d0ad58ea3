// The x402 test world on loopback, for cidfs's Rust tests: a real chain (anvil), a real
// EIP-3009 token (contracts/TestToken.sol, compiled here with solc), the reference x402
// facilitator (@x402/core + @x402/evm) behind HTTP, and optionally a /piece/ paywall made
// with the reference server middleware (@x402/express) in front of an upstream provider.
//
//   node x402_world.mjs [--fund 0xADDR]... [--upstream URL --price-per-gib N --pay-to 0xADDR]
//
// Prints one JSON line once everything listens:
//   {"rpc","chainId","network","token","tokenName","tokenVersion","facilitator","paywall"?}
// and serves until killed. The facilitator also answers GET /balance/0xADDR (the token
// balance, a decimal string) so tests can check what moved on chain.
import { spawn } from "node:child_process";
import { createServer, request as httpRequest } from "node:http";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import net from "node:net";

import solc from "solc";
import express from "express";
import { createWalletClient, createPublicClient, http, publicActions, defineChain } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { x402Facilitator } from "@x402/core/facilitator";
import { HTTPFacilitatorClient } from "@x402/core/server";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { registerExactEvmScheme } from "@x402/evm/exact/facilitator";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
const all = (name) => args.flatMap((a, i) => (a === name ? [args[i + 1]] : []));

// anvil's first well-known dev key deploys and mints; a fresh key, given ether, pays the
// facilitator's gas
const DEPLOYER = privateKeyToAccount("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");
const GAS = privateKeyToAccount(generatePrivateKey());
const TOKEN_NAME = "Test USD";
const TOKEN_VERSION = "1";

const freePort = () => new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
});

async function startAnvil() {
  const port = await freePort();
  const bin = path.join(here, "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
  const child = spawn(bin, ["--host", "127.0.0.1", "--port", String(port), "--silent"], { stdio: "ignore" });
  process.on("exit", () => child.kill());
  for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => { child.kill(); process.exit(0); });
  const rpc = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      const r = await fetch(rpc, { method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }) });
      if (r.ok) return rpc;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("anvil did not start");
}

function compileToken() {
  const source = readFileSync(path.join(here, "contracts/TestToken.sol"), "utf8");
  const input = { language: "Solidity", sources: { "TestToken.sol": { content: source } },
    settings: { optimizer: { enabled: true, runs: 200 }, outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } } } };
  const out = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (out.errors || []).filter((e) => e.severity === "error");
  if (errors.length) throw new Error(errors.map((e) => e.formattedMessage).join("\n"));
  const c = out.contracts["TestToken.sol"].TestToken;
  return { abi: c.abi, bytecode: `0x${c.evm.bytecode.object}` };
}

const rpc = await startAnvil();
const chain = defineChain({ id: 31337, name: "anvil", nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [rpc] } } });
const network = "eip155:31337";
const publicClient = createPublicClient({ chain, transport: http(rpc) });
const deployer = createWalletClient({ account: DEPLOYER, chain, transport: http(rpc) });

const { abi, bytecode } = compileToken();
const deployTx = await deployer.deployContract({ abi, bytecode, args: [TOKEN_NAME, TOKEN_VERSION] });
const token = (await publicClient.waitForTransactionReceipt({ hash: deployTx })).contractAddress;
for (const who of all("--fund")) {
  const tx = await deployer.writeContract({ address: token, abi, functionName: "mint", args: [who, 10n ** 15n] });
  await publicClient.waitForTransactionReceipt({ hash: tx });
}

await publicClient.waitForTransactionReceipt({
  hash: await deployer.sendTransaction({ to: GAS.address, value: 10n ** 20n }),
});

// the reference facilitator, over HTTP as HTTPFacilitatorClient expects it
const gasClient = createWalletClient({ account: GAS, chain, transport: http(rpc) }).extend(publicActions);
const facilitator = new x402Facilitator();
registerExactEvmScheme(facilitator, {
  signer: toFacilitatorEvmSigner(Object.assign(gasClient, { address: GAS.address })),
  networks: network,
});
const fac = express();
fac.use(express.json({ limit: "1mb" }));
const jsonSafe = (v) => JSON.parse(JSON.stringify(v, (_, x) => (typeof x === "bigint" ? x.toString() : x)));
fac.get("/supported", (_req, res) => res.json(jsonSafe(facilitator.getSupported())));
// one gas account sends every settlement: one at a time, or two would take one nonce
let queue = Promise.resolve();
const oneAtATime = (work) => { const run = queue.then(work, work); queue = run.catch(() => {}); return run; };
for (const step of ["verify", "settle"]) {
  fac.post(`/${step}`, async (req, res) => {
    try {
      const { paymentPayload, paymentRequirements } = req.body;
      const call = () => facilitator[step](paymentPayload, paymentRequirements);
      const result = jsonSafe(await (step === "settle" ? oneAtATime(call) : call()));
      if (result.isValid === false || result.success === false) console.error(`x402 world: ${step}:`, JSON.stringify(result));
      res.json(result);
    } catch (e) {
      res.status(500).json({ error: String(e?.message || e) });
    }
  });
}
fac.get("/balance/:addr", async (req, res) => {
  const b = await publicClient.readContract({ address: token, abi, functionName: "balanceOf", args: [req.params.addr] });
  res.type("text/plain").send(b.toString());
});
const facPort = await freePort();
await new Promise((r) => fac.listen(facPort, "127.0.0.1", r));
const facilitatorUrl = `http://127.0.0.1:${facPort}`;

const world = { rpc, chainId: 31337, network, token, tokenName: TOKEN_NAME, tokenVersion: TOKEN_VERSION,
  facilitator: facilitatorUrl };

// a /piece/ paywall made with the reference middleware, in front of an upstream provider
const upstream = opt("--upstream");
if (upstream) {
  const perGib = BigInt(opt("--price-per-gib") || "1073741824");
  const payTo = opt("--pay-to");
  const server = new x402ResourceServer(new HTTPFacilitatorClient({ url: facilitatorUrl }))
    .register(network, new ExactEvmScheme());
  const rangeBytes = (range) => {
    const m = /^bytes=(\d+)-(\d+)$/.exec(range || "");
    return m ? BigInt(m[2]) - BigInt(m[1]) + 1n : 1n << 30n; // a whole piece: priced as a GiB
  };
  const price = (ctx) => {
    const bytes = rangeBytes(ctx.adapter.getHeader("range"));
    let amount = (bytes * perGib + (1n << 30n) - 1n) / (1n << 30n);
    if (amount < 1n) amount = 1n;
    return { asset: token, amount: amount.toString(), extra: { name: TOKEN_NAME, version: TOKEN_VERSION } };
  };
  const app = express();
  app.use(paymentMiddleware({
    "GET /piece/*": { accepts: { scheme: "exact", price, network, payTo, maxTimeoutSeconds: 300 },
      description: "a byte range of a piece", mimeType: "application/octet-stream" },
  }, server));
  // everything (the PDP API, and /piece/ once paid) goes to the upstream provider as it is
  app.use((req, res) => {
    const target = new URL(req.originalUrl, upstream);
    const headers = { ...req.headers, host: target.host };
    const up = httpRequest(target, { method: req.method, headers }, (r) => {
      res.status(r.statusCode);
      for (const [k, v] of Object.entries(r.headers)) res.setHeader(k, v);
      r.pipe(res);
    });
    up.on("error", (e) => res.status(502).type("text/plain").send(`upstream: ${e.message}`));
    req.pipe(up);
  });
  const port = await freePort();
  await new Promise((r) => createServer(app).listen(port, "127.0.0.1", r));
  world.paywall = `http://127.0.0.1:${port}`;
}

console.log(JSON.stringify(world));
