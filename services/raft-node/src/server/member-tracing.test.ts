// MemberTracing's spans, recorded by the real SDK into its in-memory exporter.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { type Entry, EntryType } from "@etcd-ts/raft";
import { contextFromTraceparent, encodeSpanContext, tracing } from "@etcd-ts/telemetry";
import {
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import { EntryKind, encodeEnvelope } from "../apply/entry-envelope.js";
import { MemberTracing } from "./member-tracing.js";

const LEADER = 0xaan;
const FOLLOWER = 0xbbn;

let exporter: InMemorySpanExporter;
const saved = { ...tracing };

beforeEach(() => {
  exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  tracing.tracer = provider.getTracer("test");
  tracing.enabled = true;
});
afterEach(() => {
  tracing.tracer = saved.tracer;
  tracing.enabled = saved.enabled;
});

function entry(index: number, data: Uint8Array, type = EntryType.Normal): Entry {
  return { term: 2, index, type, data };
}

const spans = (name: string): ReadableSpan[] => exporter.getFinishedSpans().filter((s) => s.name === name);

describe("MemberTracing", () => {
  it("makes nothing for a request whose trace is not sampled", () => {
    const unsampled = contextFromTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    assert.equal(new MemberTracing(LEADER).proposing(EntryKind.Put, unsampled), undefined);
  });

  it("proposer: propose ends at commit, WAL append and apply are its children", async () => {
    const leader = new MemberTracing(LEADER);
    const server = tracing.tracer.startSpan("server");
    const parent = contextFromTraceparent(
      `00-${server.spanContext().traceId}-${server.spanContext().spanId}-01`,
    );
    const propose = leader.proposing(EntryKind.Put, parent)!;
    assert.ok(propose);
    let settle!: () => void;
    const done = new Promise<void>((r) => {
      settle = r;
    });
    const carried = leader.proposed(7, propose, done);
    const e = entry(5, encodeEnvelope(EntryKind.Put, LEADER, 7, new Uint8Array([1]), undefined, carried));
    leader.persisted([e], performance.now());
    leader.committed([e]);
    assert.equal(spans("etcdserver.propose").length, 1, "commit ends the propose span");
    assert.equal(spans("etcdserver.propose")[0]!.attributes["raft.index"], 5);
    leader.applied([e], performance.now());
    settle();
    await done;
    const id = propose.spanContext().spanId;
    assert.equal(spans("raft.wal_append")[0]!.parentSpanContext?.spanId, id);
    assert.equal(spans("etcdserver.apply")[0]!.parentSpanContext?.spanId, id);
    assert.equal(spans("etcdserver.propose").length, 1, "settling does not end it twice");
  });

  it("another member: one apply span per batch, child of the first traced entry, linked to each", () => {
    const follower = new MemberTracing(FOLLOWER);
    const a = encodeSpanContext({ traceId: "1".repeat(32), spanId: "2".repeat(16), traceFlags: 1 });
    const b = encodeSpanContext({ traceId: "3".repeat(32), spanId: "4".repeat(16), traceFlags: 1 });
    const batch = [
      entry(1, encodeEnvelope(EntryKind.Put, LEADER, 1, new Uint8Array([1]), undefined, a)),
      entry(2, encodeEnvelope(EntryKind.Put, LEADER, 2, new Uint8Array([1]))),
      entry(3, encodeEnvelope(EntryKind.Txn, LEADER, 3, new Uint8Array([1]), undefined, b)),
      // A ConfChange's data is no envelope, whatever its first byte.
      entry(4, new Uint8Array(64).fill(0x81), EntryType.ConfChange),
    ];
    follower.persisted(batch, performance.now());
    follower.applied(batch, performance.now());
    assert.deepEqual(
      spans("raft.wal_append").map((s) => s.spanContext().traceId),
      ["1".repeat(32), "3".repeat(32)],
    );
    const applies = spans("etcdserver.apply");
    assert.equal(applies.length, 1);
    assert.equal(applies[0]!.spanContext().traceId, "1".repeat(32));
    assert.equal(applies[0]!.parentSpanContext?.spanId, "2".repeat(16));
    assert.deepEqual(
      applies[0]!.links.map((l) => l.context.spanId),
      ["2".repeat(16), "4".repeat(16)],
    );
    assert.equal(applies[0]!.attributes["raft.batch_entries"], 4);
  });

  it("a linearizable read: the ReadIndex round, then the wait for apply", async () => {
    const member = new MemberTracing(LEADER);
    const parent = contextFromTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    await member.linearizableRead(parent, async (indexKnown) => {
      indexKnown?.(42);
    });
    const [round] = spans("etcdserver.read_index");
    const [wait] = spans("etcdserver.wait_applied");
    assert.equal(round?.attributes["raft.read_index"], 42);
    assert.equal(wait?.attributes["raft.read_index"], 42);
    assert.equal(wait?.parentSpanContext?.spanId, "00f067aa0ba902b7");
  });
});
