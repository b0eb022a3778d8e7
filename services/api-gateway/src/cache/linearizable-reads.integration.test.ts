// Linearizable reads through the gateway against our own 3 members (the chaos suite has no
// gateway target; range-cache.integration.test.ts runs against etcd, which refuses the Forward
// stream): several readers and two writers at once, one writer going to the members directly
// (the gateway learns of its puts only through its watch and its read barrier), one through the
// gateway. Every read must show a value at least as new as every put acknowledged before the
// read was sent, whether a member or the Range cache (after a read barrier) answered it.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import { LocalCluster } from "@etcd-ts/raft-node";
import pino from "pino";
import { Gateway } from "../gateway.js";
import { sleep } from "../testing/etcd-cluster.js";
import { RawEtcdClient } from "../testing/raw-client.js";

/** The first value of a RangeResponse as a number, and its header revision. */
function decodeRead(response: Buffer): { value: number; revision: number } {
  const decoded = etcdserverpb.RangeResponse.decode(response);
  const kv = decoded.kvs[0];
  return {
    value: kv === undefined ? -1 : Number(Buffer.from(kv.value).toString("utf8")),
    revision: Number(decoded.header?.revision ?? 0n),
  };
}

describe("linearizable reads through the gateway, our members", () => {
  let cluster: LocalCluster;
  let gateway: Gateway;

  before(async () => {
    cluster = await LocalCluster.start({ size: 3, token: `gw-lin-${process.pid}-${Date.now()}` });
    gateway = await Gateway.start({
      endpoints: cluster.addresses,
      listenAddr: "127.0.0.1:0",
      refreshIntervalMs: 1_000,
      keepAliveReuseMs: 0,
      serializableCacheEntries: 1_000,
      logger: pino({ level: "silent" }),
    });
  });

  after(async () => {
    await gateway?.stop(1_000);
    await cluster?.close();
  });

  it("never misses a put acknowledged before the read was sent", async () => {
    const viaGateway = new RawEtcdClient(`127.0.0.1:${gateway.grpcPort}`);
    const direct = cluster.addresses.map((address) => new RawEtcdClient(address));
    // Per key: the newest value acknowledged to its writer, and the revision it was written at.
    const acked = new Map<string, { value: number; revision: number }>();
    const keys = ["lin/direct", "lin/gateway"];
    for (const key of keys) {
      const { revision } = await viaGateway.put(key, "0");
      acked.set(key, { value: 0, revision });
    }
    const until = Date.now() + 4_000;
    const hitsBefore = gateway.rangeCache?.cache.hits ?? 0;
    let reads = 0;
    const writer = async (key: string, put: (i: number, value: string) => Promise<{ revision: number }>) => {
      for (let i = 1; Date.now() < until && i < 5_000; i++) {
        const { revision } = await put(i, String(i));
        acked.set(key, { value: i, revision });
        // Both writers write in the first 100 ms of every 200 and pause together in the rest:
        // the cache then holds the keys' answers for a while, so reads meet both paths.
        const slot = Date.now() % 200;
        await sleep(slot < 100 ? 1 : 200 - slot);
      }
    };
    const reader = async () => {
      for (let n = 0; Date.now() < until && n < 20_000; n++) {
        const key = keys[n % keys.length]!;
        const floor = acked.get(key)!;
        const seen = decodeRead(await viaGateway.range(key));
        reads++;
        assert.ok(
          seen.value >= floor.value,
          `${key}: read ${seen.value} after ${floor.value} was acknowledged at revision ${floor.revision}`,
        );
        assert.ok(seen.revision >= floor.revision, `${key}: header ${seen.revision} < ${floor.revision}`);
      }
    };
    try {
      await Promise.all([
        writer("lin/direct", (i, value) => direct[i % direct.length]!.put("lin/direct", value)),
        writer("lin/gateway", (_i, value) => viaGateway.put("lin/gateway", value)),
        reader(),
        reader(),
        reader(),
        reader(),
      ]);
    } finally {
      viaGateway.close();
      for (const client of direct) client.close();
    }
    const hits = (gateway.rangeCache?.cache.hits ?? 0) - hitsBefore;
    console.log(`# ${reads} linearizable reads, ${hits} answered from the cache after a read barrier`);
    // The test means something only if both paths served reads (a few each even on a loaded
    // machine, where a read through the gateway took ~50 ms while puts kept coming).
    assert.ok(hits >= 3, `only ${hits} reads came from the cache`);
    assert.ok(reads - hits >= 3, `only ${reads - hits} reads went to a member`);
  });
});
