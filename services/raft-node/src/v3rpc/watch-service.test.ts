import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodeWatchResponse, etcdserverpb } from "@etcd-ts/api";
import { encodeEvent, encodeResponseHeader, type ResponseHeader } from "../mvcc/mod.js";
import { type Event, EventType, watchResponse } from "../watch/mod.js";
import { FramedBatch, ResponseEncoder } from "./watch-service.js";

let term = 3;
const headerAt = (revision: number): ResponseHeader => ({
  clusterId: 0xfedcba9876543210n,
  memberId: 0x1234n,
  revision,
  raftTerm: term,
});

function event(key: string, revision: number, prevKv = false): Event {
  const kv = {
    key: Buffer.from(key),
    createRevision: 2,
    modRevision: revision,
    version: revision - 1,
    value: Buffer.from(`value of ${key}`),
    lease: 0n,
  };
  return { type: EventType.PUT, kv, prevKv: prevKv ? { ...kv, modRevision: 2, version: 1 } : undefined };
}

/** The bodies of the gRPC messages framed back to back in `framed`. */
function messages(framed: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < framed.length; ) {
    assert.equal(framed[at], 0, "uncompressed");
    const length = framed.readUInt32BE(at + 1);
    out.push(framed.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  return out;
}

function encodeOne(encoder: ResponseEncoder, r: ReturnType<typeof watchResponse>): Buffer {
  const batch = new FramedBatch();
  encoder.encode(r, batch);
  const [only] = messages(batch.finish());
  assert.equal(only?.length, batch.lengths[0]);
  return only!;
}

/** What the generic encoder writes for the response, every field in field order. */
function reference(r: ReturnType<typeof watchResponse>): Buffer {
  return encodeWatchResponse({
    headerBytes: encodeResponseHeader(headerAt(r.revision)),
    watchId: r.watchId,
    created: r.created,
    canceled: r.canceled,
    compactRevision: r.compactRevision,
    cancelReason: r.cancelReason,
    fragment: r.fragment,
    events: r.events.map((e) => encodeEvent(e)),
  });
}

describe("ResponseEncoder", () => {
  it("writes what the generic encoder writes, field order aside, for event and control answers", () => {
    term = 3;
    const encoder = new ResponseEncoder(headerAt);
    const shared = [event("a", 7), event("b", 7, true)];
    const answers = [
      watchResponse({ revision: 7, watchId: 0, events: shared }),
      watchResponse({ revision: 7, watchId: 5, events: shared }),
      watchResponse({ revision: 7, watchId: 300, events: shared }),
      watchResponse({ revision: 7, watchId: 123_456, events: shared }),
      watchResponse({ revision: 7, watchId: 2, created: true }),
      watchResponse({ revision: 0, watchId: 2, canceled: true, compactRevision: 4 }),
      watchResponse({ revision: 7, watchId: -1 }),
      watchResponse({ revision: 7, watchId: 9, fragment: true, events: [shared[0]!] }),
    ];
    // One batch, as a stream writes a turn's responses: each message framed in turn.
    const batch = new FramedBatch();
    for (const r of answers) encoder.encode(r, batch);
    const framed = messages(batch.finish());
    assert.equal(framed.length, answers.length);
    for (const [i, r] of answers.entries()) {
      assert.equal(framed[i]!.length, batch.lengths[i]);
      const decoded = etcdserverpb.WatchResponse.decode(framed[i]!);
      assert.deepEqual(decoded, etcdserverpb.WatchResponse.decode(reference(r)), JSON.stringify(r.watchId));
    }
  });

  it("shares one body among the watchers of an events array, and re-encodes it for a new term", () => {
    term = 3;
    const encoder = new ResponseEncoder(headerAt);
    const shared = [event("a", 7)];
    const first = encodeOne(encoder, watchResponse({ revision: 7, watchId: 1, events: shared }));
    const second = encodeOne(encoder, watchResponse({ revision: 7, watchId: 2, events: shared }));
    assert.equal(etcdserverpb.WatchResponse.decode(first).watchId, 1n);
    assert.equal(etcdserverpb.WatchResponse.decode(second).watchId, 2n);
    assert.deepEqual(first.subarray(2), second.subarray(2), "the same bytes after the watch_id field");

    term = 4;
    const third = etcdserverpb.WatchResponse.decode(
      encodeOne(encoder, watchResponse({ revision: 7, watchId: 3, events: shared })),
    );
    assert.equal(third.header?.raftTerm, 4n);
    // A catch-up answer's header says how far it reaches, which may differ for the same array.
    const later = etcdserverpb.WatchResponse.decode(
      encodeOne(encoder, watchResponse({ revision: 9, watchId: 3, events: shared })),
    );
    assert.equal(later.header?.revision, 9n);
    assert.equal(later.events[0]?.kv?.modRevision, 7n);
  });
});
