import { monitorEventLoopDelay } from "node:perf_hooks";
import { MvccStore, putRequest, rangeRequest, txnRequest, rangeResponseParts } from "./mvcc/mod.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
const N = Number(process.argv[2] ?? 200000);
const dir = mkdtempSync(join(tmpdir(), "range15-lag-"));
const store = await MvccStore.open(join(dir, "db"));
let index = 1;
const val = Buffer.alloc(256, 7);
for (let i = 0; i < N; i += 100) {
  const ops = [];
  for (let j = i; j < Math.min(N, i + 100); j++) ops.push({ requestPut: putRequest({ key: `key${String(j).padStart(8, "0")}`, value: val }) });
  await store.apply({ index: index++, term: 1, request: { txn: txnRequest({ success: ops }) } });
}
console.log("loaded", N);
for (const mode of ["encoded"]) {
  for (let round = 0; round < 4; round++) {
    const h = monitorEventLoopDelay({ resolution: 5 });
    h.enable();
    let maxGap = 0; let last = performance.now();
    const t = setInterval(() => { const now = performance.now(); maxGap = Math.max(maxGap, now - last); last = now; }, 2);
    const t0 = performance.now();
    const r = rangeRequest({ key: "\0", rangeEnd: "\0" });
    let bytes = 0;
    if (mode === "encoded") { const res = await store.rangeEncoded(r); for (const p of rangeResponseParts(res)) bytes += p.length; }
    else { const res = await store.range(r); bytes = res.kvs.length; }
    const ms = performance.now() - t0;
    clearInterval(t); h.disable();
    console.log(mode, `range ${ms.toFixed(0)} ms, ${bytes}, max gap ${maxGap.toFixed(1)} ms, p99 delay ${(h.percentile(99)/1e6).toFixed(1)} ms, heap ${(process.memoryUsage().heapUsed/2**20).toFixed(0)} MiB rss ${(process.memoryUsage().rss/2**20).toFixed(0)}`);
  }
}
await store.close();
rmSync(dir, { recursive: true, force: true });
