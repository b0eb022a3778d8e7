import assert from "node:assert/strict";
import { describe, it } from "node:test";
// protobufjs arrives with @grpc/grpc-js's proto-loader; here it is the independent encoder the
// size arithmetic is checked against.
import protobuf from "protobufjs";
import { type Event, EventType, type KeyValue } from "./events.js";
import { fragmentResponse } from "./fragment.js";
import { eventFieldSize, MAX_RESPONSE_HEADER_SIZE, watchResponseBaseSize } from "./response-size.js";
import { type WatchResponse, watchResponse } from "./watch-response.js";

const root = protobuf.Root.fromJSON({
  nested: {
    KeyValue: {
      fields: {
        key: { type: "bytes", id: 1 },
        createRevision: { type: "int64", id: 2 },
        modRevision: { type: "int64", id: 3 },
        version: { type: "int64", id: 4 },
        value: { type: "bytes", id: 5 },
        lease: { type: "int64", id: 6 },
      },
    },
    Event: {
      fields: {
        type: { type: "int32", id: 1 },
        kv: { type: "KeyValue", id: 2 },
        prevKv: { type: "KeyValue", id: 3 },
      },
    },
    WatchResponse: {
      fields: {
        watchId: { type: "int64", id: 2 },
        created: { type: "bool", id: 3 },
        canceled: { type: "bool", id: 4 },
        compactRevision: { type: "int64", id: 5 },
        cancelReason: { type: "string", id: 6 },
        fragment: { type: "bool", id: 7 },
        events: { rule: "repeated", type: "Event", id: 11 },
      },
    },
  },
});
const WatchResponseType = root.lookupType("WatchResponse");

/** protobufjs writes every field present on the object; proto3 omits defaults, so drop them. */
function withoutDefaults(value: unknown): unknown {
  if (Buffer.isBuffer(value) || Array.isArray(value)) {
    return Array.isArray(value) ? value.map(withoutDefaults) : value;
  }
  // protobufjs takes 64-bit values as decimal strings.
  if (typeof value === "bigint") return value.toString();
  if (typeof value !== "object" || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [field, v] of Object.entries(value)) {
    if (v === 0 || v === 0n || v === false || v === "" || (Buffer.isBuffer(v) && v.length === 0)) continue;
    if (Array.isArray(v) && v.length === 0) continue;
    out[field] = withoutDefaults(v);
  }
  return out;
}

function encodedSizeWithoutHeader(response: WatchResponse): number {
  const { revision: _headerRevision, ...body } = response;
  const message = WatchResponseType.fromObject(withoutDefaults(body) as Record<string, unknown>);
  return WatchResponseType.encode(message).finish().length;
}

function kv(key: string, valueBytes: number, revision: number, lease = 0n): KeyValue {
  return {
    key: Buffer.from(key),
    createRevision: revision,
    modRevision: revision,
    version: 1,
    value: Buffer.alloc(valueBytes, 0x61),
    lease,
  };
}

describe("response sizes", () => {
  it("match protobuf's encoding of the same WatchResponse (header excluded)", () => {
    const bigRevision = 2 ** 40 + 3;
    const responses: WatchResponse[] = [
      watchResponse({ revision: 1, watchId: 0 }),
      watchResponse({
        revision: 1,
        watchId: -1,
        created: true,
        canceled: true,
        cancelReason: "mvcc: watcher range is empty",
      }),
      watchResponse({ revision: 1, watchId: 5, canceled: true, compactRevision: 300 }),
      watchResponse({
        revision: 9,
        watchId: 130,
        fragment: true,
        events: [
          { type: EventType.PUT, kv: kv("k", 0, 1) },
          {
            type: EventType.PUT,
            kv: kv("key-2", 300, bigRevision, 7_587_000_123n),
            prevKv: kv("key-2", 20, 5),
          },
          {
            type: EventType.DELETE,
            kv: {
              key: Buffer.from("gone"),
              createRevision: 0,
              modRevision: 17,
              version: 0,
              value: Buffer.alloc(0),
              lease: 0n,
            },
            prevKv: kv("gone", 70_000, 16),
          },
        ],
      }),
    ];
    for (const response of responses) {
      let computed = watchResponseBaseSize(response) - MAX_RESPONSE_HEADER_SIZE;
      for (const event of response.events) computed += eventFieldSize(event);
      assert.equal(computed, encodedSizeWithoutHeader(response), JSON.stringify(response.events.length));
    }
  });
});

describe("fragmentResponse", () => {
  const events = (count: number, valueBytes: number): Event[] =>
    Array.from({ length: count }, (_, i) => ({ type: EventType.PUT, kv: kv(`key-${i}`, valueBytes, 10) }));
  const sizeOf = (response: WatchResponse) => encodedSizeWithoutHeader(response) + MAX_RESPONSE_HEADER_SIZE;

  it("leaves a response under the limit whole", () => {
    const response = watchResponse({ revision: 10, watchId: 1, events: events(5, 10) });
    assert.deepEqual(fragmentResponse(response, 10_000), [response]);
  });

  it("splits at the limit: every piece under it, all but the last flagged, events in order", () => {
    const all = events(50, 1000);
    const response = watchResponse({ revision: 10, watchId: 3, events: all });
    const limit = 4096;
    const pieces = fragmentResponse(response, limit);
    assert.ok(pieces.length > 1);
    assert.deepEqual(
      pieces.map((p) => p.fragment),
      pieces.map((_, i) => i < pieces.length - 1),
    );
    for (const piece of pieces) {
      assert.ok(sizeOf(piece) < limit, `piece of ${piece.events.length} events is ${sizeOf(piece)} bytes`);
      assert.equal(piece.watchId, 3);
      assert.equal(piece.revision, 10);
      // Greedy: one more event would have reached the limit.
      const index = all.indexOf(piece.events[piece.events.length - 1]);
      if (index + 1 < all.length && piece.fragment) {
        const grown = { ...piece, events: [...piece.events, all[index + 1]] };
        assert.ok(sizeOf(grown) >= limit);
      }
    }
    assert.deepEqual(
      pieces.flatMap((p) => p.events),
      all,
    );
  });

  it("sends an event larger than the limit alone, and never splits a single event", () => {
    const big = events(3, 10_000);
    const pieces = fragmentResponse(watchResponse({ revision: 1, watchId: 1, events: big }), 1000);
    assert.deepEqual(
      pieces.map((p) => p.events.length),
      [1, 1, 1],
    );
    const single = watchResponse({ revision: 1, watchId: 1, events: events(1, 10_000) });
    assert.deepEqual(fragmentResponse(single, 1000), [single]);
  });
});
