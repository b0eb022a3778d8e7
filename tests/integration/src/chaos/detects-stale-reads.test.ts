// End to end proof that the pipeline (launcher, link proxies, client, history, checker) can
// fail: a member cut off from its peers answers serializable reads from its own, stale,
// state, which the checker must report; the same read made linearizable cannot complete, so
// the history stays linearizable.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";
import { addressOf, LocalCluster } from "@etcd-ts/raft-node";
import { EtcdEndpoint } from "../cluster/etcd-client.js";
import { type TargetKind, targetClusterOptions } from "../cluster/targets.js";
import { HistoryRecorder } from "./history.js";
import { checkLinearizability } from "./linearizability.js";
import { classifyError } from "./workload.js";

const target = (process.env.CHAOS_TARGET ?? "etcd") as TargetKind;
const skip =
  target === "etcd" && !existsSync(process.env.ETCD_BIN ?? "/usr/bin/etcd") ? "no etcd binary" : undefined;

let cluster: LocalCluster;
let endpoints: EtcdEndpoint[];

before(async () => {
  if (skip) return;
  cluster = await LocalCluster.create(targetClusterOptions(target, { token: `stale-reads-${process.pid}` }));
  cluster.startAll();
  await cluster.agreedLeader(60_000);
  endpoints = cluster.members.map((m) => new EtcdEndpoint(addressOf(m)));
});

after(async () => {
  if (skip) return;
  for (const e of endpoints) e.close();
  await cluster.close();
});

test(`${target}: a serializable read from an isolated member is reported as a stale read`, {
  skip,
  timeout: 120_000,
}, async () => {
  const h = new HistoryRecorder();
  const key = "/stale/k";
  const leader = (await cluster.leader())!.index;
  const isolated = (leader + 1) % cluster.members.length;

  const write = async (value: string) => {
    const op = h.invoke({ process: 0, kind: "write", key, value });
    h.complete(op, "ok", { revision: await endpoints[leader].put(key, value, 5_000) });
  };
  const read = async (member: number, serializable: boolean) => {
    const op = h.invoke({ process: 1 + member, kind: "read", key });
    try {
      const r = await endpoints[member].get(key, 2_000, { serializable });
      h.complete(op, "ok", { output: r.value, revision: r.revision, modRevision: r.modRevision });
    } catch (err) {
      h.complete(op, classifyError(err).outcome, { error: classifyError(err).error });
    }
    return op;
  };

  await write("before");
  // The isolated member must have applied "before", so that its stale answer is a value. These
  // polls are not recorded: until it has applied, a follower's serializable read is stale too.
  for (let i = 0; i < 50; i++) {
    const r = await endpoints[isolated].get(key, 2_000, { serializable: true }).catch(() => undefined);
    if (r?.value === "before") break;
    await new Promise((resolveWait) => setTimeout(resolveWait, 100));
  }
  cluster.network!.isolate(isolated, "stall");
  await write("after");

  const linearizableRead = await read(isolated, false);
  assert.notEqual(linearizableRead.outcome, "ok", "a cut-off member cannot serve a linearizable read");
  assert.equal(checkLinearizability(h.ops).verdict, "ok");

  const stale = await read(isolated, true);
  assert.equal(stale.output, "before");
  const report = checkLinearizability(h.ops);
  assert.equal(report.verdict, "violation");
  const cx = report.keys[0].counterexample!;
  assert.ok(cx.window.includes(stale), cx.text);
  cluster.network!.healAll();
});
