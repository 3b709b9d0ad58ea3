// The reference x402 client (@x402/fetch + @x402/evm) fetching a byte range, for cidfs's
// tests: pays whatever 402 it gets (our test token allowed, up to MAX atomic units) and
// prints one JSON line: {"status","bytes","sha256","paymentResponse"}.
//
//   node x402_fetch.mjs URL RANGE PRIVATE_KEY TOKEN MAX
import { createHash } from "node:crypto";
import { privateKeyToAccount } from "viem/accounts";
import { wrapFetchWithPaymentFromConfig, decodePaymentResponseHeader } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm/exact/client";

const [url, range, key, token, max] = process.argv.slice(2);
const account = privateKeyToAccount(key);
const pay = wrapFetchWithPaymentFromConfig(fetch, {
  schemes: [{ network: "eip155:31337", client: new ExactEvmScheme(account) }],
  spendControls: { allowedAssets: [{ network: "eip155:31337", asset: token, maxAmountPerPayment: max }] },
});
const r = await pay(url, { headers: { Range: range } });
const body = Buffer.from(await r.arrayBuffer());
const header = r.headers.get("PAYMENT-RESPONSE");
console.log(JSON.stringify({
  status: r.status,
  bytes: body.length,
  sha256: createHash("sha256").update(body).digest("hex"),
  paymentResponse: header ? decodePaymentResponseHeader(header) : null,
  error: r.ok ? undefined : body.toString("utf8").slice(0, 2000),
}));
