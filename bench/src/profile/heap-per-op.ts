// Bytes a member allocates per call, by function: 3 members on loopback (LocalCluster), goload
// at 1 client (--clients/--conns) straight to the leader, and V8's sampling heap profiler on one
// member over --calls calls after --warmup, with the objects that scavenges and full collections
// freed kept in the samples (CDP HeapProfiler.startSampling's includeObjectsCollectedBy*GC): all
// allocation, not what stayed alive. What --gc of cpu-per-op counts as young garbage, here by
// allocating function, with each function's callers. --survivors: leave out what a scavenge freed,
// so the samples are what lived through at least one scavenge (promoted to the old generation, or
// still alive at the end): at many clients a call's own objects outlive scavenges, and this is
// what drives the full collections (e.g. --clients 100 --conns 10).
// Usage (after `npx tsc -b` and bench/goload/build.sh):
//   node --experimental-websocket bench/dist/profile/heap-per-op.js [--op put] [--calls 2000]
//     [--warmup 2000] [--member leader|follower] [--top 30] [--main a.js] [--out FILE.heapprofile]
//     [--survivors]
// Node 20 has WebSocket behind --experimental-websocket (the inspector's protocol runs over it).
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { LocalCluster } from "@etcd-ts/raft-node";
import { runGoload } from "../goload.js";

const { values: args } = parseArgs({
  options: {
    op: { type: "string", default: "put" },
    calls: { type: "string", default: "2000" },
    warmup: { type: "string", default: "2000" },
    clients: { type: "string", default: "1" },
    conns: { type: "string", default: "1" },
    member: { type: "string", default: "leader" },
    top: { type: "string", default: "30" },
    interval: { type: "string", default: "1024" },
    main: { type: "string" },
    out: { type: "string" },
    survivors: { type: "boolean", default: false },
  },
});
if (typeof WebSocket === "undefined") throw new Error("run node with --experimental-websocket");
const calls = Number(args.calls);

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

/** One CDP session over the inspector's WebSocket: calls answered by id. */
async function inspector(url: string) {
  const ws = new WebSocket(url);
  await new Promise((ok, fail) => {
    ws.addEventListener("open", ok);
    ws.addEventListener("error", fail);
  });
  let id = 0;
  const waiting = new Map<number, { ok: (result: unknown) => void; fail: (err: Error) => void }>();
  ws.addEventListener("message", (e) => {
    const m = JSON.parse(String(e.data)) as { id?: number; result?: unknown; error?: unknown };
    const call = m.id === undefined ? undefined : waiting.get(m.id);
    if (call === undefined) return;
    waiting.delete(m.id!);
    if (m.error !== undefined) call.fail(new Error(`inspector: ${JSON.stringify(m.error)}`));
    else call.ok(m.result);
  });
  return {
    call: (method: string, params: object = {}) =>
      new Promise<unknown>((ok, fail) => {
        const i = ++id;
        waiting.set(i, { ok, fail });
        ws.send(JSON.stringify({ id: i, method, params }));
      }),
    close: () => ws.close(),
  };
}

const frameName = (f: ProfileNode["callFrame"]) =>
  `${f.functionName || "(anonymous)"} ${f.url.replace(/^.*\/(services|packages|node_modules)\//, "")}:${f.lineNumber + 1}`;

const cluster = await LocalCluster.start({
  size: 3,
  ...(args.main === undefined ? {} : { main: resolve(args.main) }),
  token: "heap-per-op",
  nodeFlags: () => ["--inspect=127.0.0.1:0"],
});
try {
  const { member: leader } = await cluster.agreedLeader();
  const target = args.member === "follower" ? cluster.members.find((m) => m !== leader)! : leader;
  const load = (n: number) =>
    runGoload([
      ...["-endpoints", leader.clientUrl.replace(/^https?:\/\//, ""), "-op", args.op!],
      ...["-conns", args.conns!, "-clients", args.clients!, "-total", String(n)],
    ]);
  if (Number(args.warmup) > 0) await load(Number(args.warmup));
  const url = target.output.match(/ws:\/\/\S+/)?.[0];
  if (url === undefined) throw new Error(`${target.name} printed no inspector URL`);
  const session = await inspector(url);
  await session.call("HeapProfiler.enable");
  await session.call("HeapProfiler.startSampling", {
    samplingInterval: Number(args.interval),
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: !args.survivors,
  });
  const result = await load(calls);
  const { profile } = (await session.call("HeapProfiler.stopSampling")) as { profile: { head: ProfileNode } };
  session.close();
  if (args.out !== undefined) writeFileSync(args.out, JSON.stringify(profile));
  // Self bytes by function, and by function with its nearest three callers.
  const self = new Map<string, number>();
  const withCallers = new Map<string, number>();
  let total = 0;
  const walk = (node: ProfileNode, stack: string[]) => {
    const name = frameName(node.callFrame);
    total += node.selfSize;
    self.set(name, (self.get(name) ?? 0) + node.selfSize);
    if (node.selfSize > 0) {
      const key = `${name}  <-  ${stack.slice(-3).reverse().join(" <- ")}`;
      withCallers.set(key, (withCallers.get(key) ?? 0) + node.selfSize);
    }
    for (const child of node.children) walk(child, [...stack, name]);
  };
  walk(profile.head, []);
  const kb = (bytes: number) => (bytes / calls / 1024).toFixed(2).padStart(7);
  const top = Number(args.top);
  console.log(
    `${target.name} (${target === leader ? "leader" : "follower"}), ${args.op} x${calls} at ${args.clients} client(s), ${Math.round(result.ops_per_s)} ops/s: ${kb(total).trim()} KB ${args.survivors ? "that outlived a scavenge" : "allocated"} per call`,
  );
  console.log("\nby function (KB per call):");
  for (const [name, bytes] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`${kb(bytes)}  ${name}`);
  console.log("\nby function and callers (KB per call):");
  for (const [name, bytes] of [...withCallers].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`${kb(bytes)}  ${name}`);
} finally {
  await Promise.all(cluster.members.map((m) => cluster.stop(m)));
  await cluster.close();
}
