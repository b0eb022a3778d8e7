// Deterministic apply (etcd checks request limits in its RPC layer only): a txn that a member
// started with a high --max-txn-ops accepts must be applied, identically, by members started
// with etcd's default limit. Before the limit moved to v3rpc, the others refused it at apply
// and their stores diverged from the proposer's.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { etcdctl, haveEtcdctl } from "./etcdctl.fixture.js";
import { addressOf, LocalCluster, type MemberProcess } from "./local-cluster.js";

const OPS = 200; // past etcd's default --max-txn-ops (128), within m1's
/** etcdctl's interactive txn: no compares, OPS puts on success, no failure ops. */
function bigTxn(prefix: string): string {
  const puts = Array.from({ length: OPS }, (_, i) => `put ${prefix}${String(i).padStart(3, "0")} v${i}\n`);
  return `\n${puts.join("")}\n\n`;
}

/** Keys under `prefix` with their mod revisions, read from `m`'s own state (serializable). */
async function revisionsOn(m: MemberProcess, prefix: string): Promise<string[]> {
  const out = JSON.parse(
    await etcdctl(addressOf(m), ["get", prefix, "--prefix", "--consistency=s", "-w", "json"]),
  ) as { kvs?: { key: string; mod_revision: number }[] };
  return (out.kvs ?? []).map((kv) => `${Buffer.from(kv.key, "base64").toString()}@${kv.mod_revision}`);
}

describe("members with different request limits", {
  skip: haveEtcdctl ? false : "etcdctl not installed",
}, () => {
  let cluster: LocalCluster;
  before(async () => {
    cluster = await LocalCluster.start({ size: 3, memberFlags: { m1: ["--max-txn-ops", "512"] } });
  });
  after(() => cluster?.close());

  it("apply a txn the proposer's limit allowed identically, whatever their own limit", async () => {
    const [m1, m2, m3] = cluster.members as [MemberProcess, MemberProcess, MemberProcess];
    // The RPC layer of a member with the default limit refuses it, with etcd's message...
    await assert.rejects(etcdctl(addressOf(m2), ["txn"], bigTxn("t/")), /too many operations in txn request/);
    // ...and the member with the higher limit accepts it.
    assert.match(await etcdctl(addressOf(m1), ["txn"], bigTxn("t/")), /SUCCESS/);
    const expected = await revisionsOn(m1, "t/");
    assert.equal(expected.length, OPS);

    const deadline = Date.now() + 30_000;
    for (const m of [m2, m3]) {
      let got = await revisionsOn(m, "t/");
      while (got.length < OPS && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        got = await revisionsOn(m, "t/");
      }
      assert.deepEqual(got, expected, `${m.name} applied the txn differently`);
    }
    // The whole key space hashes alike on every member at the same revision.
    const hashes = JSON.parse(
      await etcdctl(cluster.members.map(addressOf).join(","), ["endpoint", "hashkv", "-w", "json"]),
    ) as {
      HashKV: { hash: number; header: { revision: number } };
    }[];
    assert.equal(hashes.length, 3);
    assert.equal(new Set(hashes.map((h) => `${h.HashKV.header.revision}:${h.HashKV.hash}`)).size, 1);
  });
});
