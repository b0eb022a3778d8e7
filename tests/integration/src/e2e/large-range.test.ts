// A large Range (50,000 keys, ~12 MB) answered by a member (chunked encoding, sent in pieces)
// and through the gateway (forwarded in the pieces it arrived in): the same answer both ways,
// for the request shapes that take the stored-bytes path and those that build KeyValues.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import { Stack } from "./stack.js";

const KEYS = 50_000;
const PER_TXN = 100;

const identity = (b: Buffer) => b;

class Client {
  readonly client: grpc.Client;
  constructor(address: string) {
    // grpc-js refuses answers over 4 MiB by default; etcd's clients take up to 2 GiB.
    this.client = new grpc.Client(address, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": -1,
    });
  }

  unary(path: string, request: Uint8Array): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        path,
        identity,
        identity,
        Buffer.from(request),
        new grpc.Metadata(),
        { deadline: Date.now() + 60_000 },
        (err, res) => (err ? reject(err) : resolve(res!)),
      );
    });
  }

  async range(req: Partial<etcdserverpb.RangeRequest>): Promise<etcdserverpb.RangeResponse> {
    const bytes = await this.unary(
      "/etcdserverpb.KV/Range",
      etcdserverpb.RangeRequest.encode(etcdserverpb.RangeRequest.fromPartial(req)).finish(),
    );
    return etcdserverpb.RangeResponse.decode(bytes);
  }

  async txn(req: Partial<etcdserverpb.TxnRequest>): Promise<etcdserverpb.TxnResponse> {
    const bytes = await this.unary(
      "/etcdserverpb.KV/Txn",
      etcdserverpb.TxnRequest.encode(etcdserverpb.TxnRequest.fromPartial(req)).finish(),
    );
    return etcdserverpb.TxnResponse.decode(bytes);
  }
}

const key = (i: number) => Buffer.from(`big/${String(i).padStart(6, "0")}`);
const value = (i: number) => Buffer.from(`${i}:`.padEnd(200, String.fromCharCode(97 + (i % 26))));

describe("a Range over 50,000 keys, from a member and through the gateway", { timeout: 240_000 }, () => {
  let stack: Stack;
  let member: Client;
  let gateway: Client;
  let halfway = 0n;

  before(async () => {
    stack = await Stack.start();
    member = new Client(stack.cluster.addresses[0]!);
    gateway = new Client(stack.gatewayAddr);
    const batches = KEYS / PER_TXN;
    // Four writers side by side keep loading to a few seconds.
    let next = 0;
    const writer = async () => {
      for (let b = next++; b < batches; b = next++) {
        const success = Array.from({ length: PER_TXN }, (_, j) => ({
          requestPut: etcdserverpb.PutRequest.fromPartial({
            key: key(b * PER_TXN + j),
            value: value(b * PER_TXN + j),
          }),
        }));
        const res = await member.txn({ success });
        if (b === batches / 2) halfway = res.header!.revision;
      }
    };
    await Promise.all([writer(), writer(), writer(), writer()]);
  });

  after(async () => {
    member?.client.close();
    gateway?.client.close();
    await stack?.close();
  });

  const bounds = { key: Buffer.from("big/"), rangeEnd: Buffer.from("big0") };
  const shapes: [string, Partial<etcdserverpb.RangeRequest>][] = [
    ["all keys, linearizable", {}],
    ["all keys, serializable", { serializable: true }],
    ["the first 1,000 (more, count)", { limit: 1000n }],
    ["keys only", { keysOnly: true }],
    ["count only", { countOnly: true }],
    ["descending by key, 10", { sortOrder: 2, sortTarget: 0, limit: 10n }],
    ["with a revision filter (min_mod_revision)", { minModRevision: 1n }],
    // Shaped on the key index a batch per turn, then read in that order (store.ts rangeShaped).
    ["descending by key, all", { sortOrder: 2, sortTarget: 0 }],
    ["descending by mod revision, all", { sortOrder: 2, sortTarget: 3 }],
    ["ascending by value, 100", { sortOrder: 1, sortTarget: 4, limit: 100n }],
  ];

  for (const [name, extra] of shapes) {
    test(name, async () => {
      const req = { ...bounds, ...extra };
      const direct = await member.range(req);
      const via = await gateway.range(req);
      assert.equal(via.count, direct.count);
      assert.equal(via.more, direct.more);
      assert.equal(via.header!.revision, direct.header!.revision);
      assert.equal(via.kvs.length, direct.kvs.length);
      assert.deepEqual(via.kvs, direct.kvs);
      if (extra.countOnly) assert.equal(direct.count, BigInt(KEYS));
      else if (extra.limit === undefined) assert.equal(direct.kvs.length, KEYS);
      if (extra.limit === 1000n) assert.equal(direct.more, true);
      if (name === "descending by key, all") {
        assert.deepEqual(Buffer.from(direct.kvs[0]!.key), key(KEYS - 1));
        assert.deepEqual(Buffer.from(direct.kvs[KEYS - 1]!.key), key(0));
      }
      for (let i = 1; i < direct.kvs.length; i++) {
        const [a, b] = [direct.kvs[i - 1]!, direct.kvs[i]!];
        if (extra.sortTarget === 3) assert.ok(a.modRevision >= b.modRevision, `mod revision order at ${i}`);
        if (extra.sortTarget === 4) assert.ok(Buffer.compare(a.value, b.value) <= 0, `value order at ${i}`);
      }
      if (name.startsWith("all keys")) {
        for (const i of [0, 1, 12_345, KEYS - 1]) {
          assert.deepEqual(Buffer.from(direct.kvs[i]!.key), key(i));
          assert.deepEqual(Buffer.from(direct.kvs[i]!.value), value(i));
        }
      }
    });
  }

  test("at a past revision: the keys written by then", async () => {
    const req = { ...bounds, revision: halfway };
    const direct = await member.range(req);
    const via = await gateway.range(req);
    assert.ok(direct.kvs.length > 0 && direct.kvs.length < KEYS);
    assert.equal(direct.count, BigInt(direct.kvs.length));
    assert.deepEqual(via.kvs, direct.kvs);
    for (const kv of direct.kvs) assert.ok(kv.modRevision <= halfway);
  });

  test("the JSON gateway pages the same keys", async () => {
    const res = await fetch(`${stack.jsonUrl}/v3/kv/range`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        key: bounds.key.toString("base64"),
        range_end: bounds.rangeEnd.toString("base64"),
        limit: 3,
      }),
    });
    assert.equal(res.status, 200);
    const json = (await res.json()) as { kvs: { key: string }[]; more: boolean; count: string };
    assert.equal(json.count, String(KEYS));
    assert.equal(json.more, true);
    assert.deepEqual(
      json.kvs.map((kv) => Buffer.from(kv.key, "base64").toString()),
      [0, 1, 2].map((i) => key(i).toString()),
    );
    // Unpaged: the gateway's answer arrives in pieces and is joined for the JSON encoding.
    const all = await fetch(`${stack.jsonUrl}/v3/kv/range`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        key: bounds.key.toString("base64"),
        range_end: bounds.rangeEnd.toString("base64"),
      }),
    });
    assert.equal(all.status, 200);
    const every = (await all.json()) as { kvs: { key: string; value: string }[] };
    assert.equal(every.kvs.length, KEYS);
    assert.deepEqual(Buffer.from(every.kvs[KEYS - 1]!.value, "base64"), value(KEYS - 1));
  });
});
