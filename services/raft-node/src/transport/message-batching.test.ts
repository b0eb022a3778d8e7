import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { frameGrpcMessage, peer } from "@etcd-ts/api";
import { decodeMessage, EntryType, encodeMessage, type Message, MessageType } from "@etcd-ts/raft";
import {
  batchByRecipient,
  batchHead,
  decodeRaftBatch,
  encodeRaftBatch,
  encodeRaftBatchMessage,
  grpcTarget,
  nextBackoffMs,
} from "./message-batching.js";

const msg = (type: MessageType, to: bigint, index: number): Message => ({
  type,
  to,
  from: 1n,
  term: 1,
  logTerm: 0,
  index,
  entries: [],
  commit: 0,
  reject: false,
  rejectHint: 0,
});

describe("message batching", () => {
  it("groups by recipient in emission order and sets snapshots apart", () => {
    const out = batchByRecipient([
      msg(MessageType.MsgApp, 2n, 1),
      msg(MessageType.MsgApp, 3n, 1),
      msg(MessageType.MsgSnap, 3n, 5),
      msg(MessageType.MsgHeartbeat, 2n, 2),
    ]);
    assert.deepEqual(
      out.byPeer.get(2n)?.map((m) => m.index),
      [1, 2],
    );
    assert.deepEqual(
      out.byPeer.get(3n)?.map((m) => m.type),
      [MessageType.MsgApp],
    );
    assert.equal(out.snapshots.length, 1);
  });

  it("turns peer URLs into grpc-js targets", () => {
    assert.equal(grpcTarget("http://127.0.0.1:2380"), "127.0.0.1:2380");
    assert.equal(grpcTarget("http://localhost:2380/"), "localhost:2380");
    assert.equal(grpcTarget("https://example.com"), "example.com:443");
    assert.equal(grpcTarget("http://[::1]:2380"), "[::1]:2380");
  });

  it("backs off exponentially up to a cap", () => {
    let ms = 0;
    const seen: number[] = [];
    for (let i = 0; i < 7; i++) {
      ms = nextBackoffMs(ms);
      seen.push(ms);
    }
    assert.deepEqual(seen, [50, 100, 200, 400, 800, 1000, 1000]);
    assert.deepEqual([nextBackoffMs(0, 50, 100), nextBackoffMs(100, 50, 100)], [50, 100]);
  });

  it("writes a RaftBatch byte for byte as the generated encoder does", () => {
    const withEntries: Message = {
      ...msg(MessageType.MsgApp, 0xfedcba9876543210n, 7),
      entries: [{ term: 3, index: 8, type: EntryType.Normal, data: Buffer.from("put k v") }],
      commit: 6,
    };
    // Multi-byte varints everywhere, a rejection, a snapshot and a context: every field written.
    const big: Message = {
      ...msg(MessageType.MsgSnap, 0xfedcba9876543210n, 2 ** 40),
      from: 0x91bc3c398fb3c146n,
      term: 300,
      logTerm: 2 ** 21,
      commit: 2 ** 35,
      reject: true,
      rejectHint: 129,
      entries: Array.from({ length: 40 }, (_, i) => ({
        term: 300,
        index: 2 ** 40 + i,
        type: i % 7 === 0 ? EntryType.ConfChange : EntryType.Normal,
        data: Buffer.alloc(1 + i * 13, i),
      })),
      snapshot: {
        metadata: {
          index: 2 ** 33,
          term: 9,
          confState: { voters: [1n, 0xfedcba9876543210n], learners: [7n] },
        },
        data: Buffer.alloc(200, 3),
      },
      context: Buffer.from("ctx"),
    };
    const messages = [withEntries, msg(MessageType.MsgHeartbeat, 0xfedcba9876543210n, 0), big];
    for (const [clusterId, from] of [
      [0x8e9e05c52164694dn, 0x91bc3c398fb3c146n],
      [0n, 0n],
    ] as const) {
      const { batch, messageBytes } = encodeRaftBatch(clusterId, from, 0xfedcba9876543210n, messages);
      const encoded = messages.map((m) => Buffer.from(encodeMessage(m)));
      const expected = peer.RaftBatch.encode({
        clusterId,
        from,
        to: 0xfedcba9876543210n,
        messages: encoded,
      }).finish();
      assert.deepEqual(batch, Buffer.from(expected));
      assert.equal(
        messageBytes,
        encoded.reduce((n, b) => n + b.length, 0),
      );
      const decoded = peer.RaftBatch.decode(batch);
      assert.deepEqual(decoded.messages.map(decodeMessage), messages);
    }
  });

  it("a batch head, kept per recipient, is the generated encoder's for every ID triple", () => {
    // Each pass changes one ID of the last (the cluster, then the sender, then back), and the
    // last passes go past the cache's bound: never a stale head.
    const passes: [number, bigint, (i: number) => bigint][] = [
      [10, 0x8e9e05c52164694dn, () => 0x91bc3c398fb3c146n],
      [10, 0n, () => 0x91bc3c398fb3c146n],
      [10, 0n, (i) => BigInt(i)],
      [10, 0x8e9e05c52164694dn, (i) => BigInt(i)],
      [70, 0x8e9e05c52164694dn, () => 0x91bc3c398fb3c146n],
      [70, 0x8e9e05c52164694dn, () => 0x91bc3c398fb3c146n],
    ];
    for (const [recipients, clusterId, fromOf] of passes)
      for (let i = 0; i < recipients; i++) {
        const to = i === 0 ? 0n : 0xfedcba9876543210n - BigInt(i);
        const from = fromOf(i);
        const want = peer.RaftBatch.encode({ clusterId, from, to, messages: [] }).finish();
        assert.deepEqual(
          Buffer.from(batchHead(clusterId, from, to)),
          Buffer.from(want),
          `${clusterId} ${from} ${to}`,
        );
      }
  });

  it("reads a RaftBatch as the generated decoder does, skipping fields it does not know", () => {
    const messages = [msg(MessageType.MsgApp, 0xfedcba9876543210n, 7), msg(MessageType.MsgHeartbeat, 5n, 0)];
    const encoded = messages.map((m) => Buffer.from(encodeMessage(m)));
    const bytes = peer.RaftBatch.encode({
      clusterId: 0x8e9e05c52164694dn,
      from: 0xffffffffffffffffn,
      to: 3n,
      messages: encoded,
    }).finish();
    // A field from a newer sender (number 9, a string) ahead of the rest.
    const withUnknown = Buffer.concat([Buffer.from([0x4a, 0x02, 0x68, 0x69]), bytes]);
    for (const b of [bytes, withUnknown]) {
      const batch = decodeRaftBatch(b);
      assert.equal(batch.clusterId, 0x8e9e05c52164694dn);
      assert.equal(batch.from, 0xffffffffffffffffn);
      assert.equal(batch.to, 3n);
      assert.deepEqual(batch.messages.map(decodeMessage), messages);
    }
    assert.deepEqual(decodeRaftBatch(new Uint8Array(0)), { clusterId: 0n, from: 0n, to: 0n, messages: [] });
    assert.throws(() => decodeRaftBatch(Buffer.from([0x22, 0x05, 0x01])), /truncated/);
  });

  it("writes the batch as one gRPC message, byte for byte the framed batch", () => {
    const messages = [msg(MessageType.MsgApp, 3n, 7), msg(MessageType.MsgHeartbeat, 3n, 0)];
    const { batch, messageBytes } = encodeRaftBatch(0x8e9e05c52164694dn, 1n, 3n, messages);
    const framed = encodeRaftBatchMessage(0x8e9e05c52164694dn, 1n, 3n, messages);
    assert.deepEqual(framed.message, frameGrpcMessage(batch));
    assert.equal(framed.messageBytes, messageBytes);
  });
});
