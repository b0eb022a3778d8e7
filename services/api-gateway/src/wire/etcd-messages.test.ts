import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodeWatchResponse, etcdserverpb, mvccpb, WireWriter } from "@etcd-ts/api";
import {
  classifyTxn,
  decodeKeepAliveRequest,
  decodeKeepAliveResponse,
  decodeMemberListResponse,
  decodeStatusResponse,
  decodeWatchRequest,
  decodeWatchResponse,
  encodeKeepAliveRequest,
  encodeKeepAliveResponse,
  encodeWatchCancelRequest,
  encodeWatchCreateRequest,
  keepEventsFrom,
  peekCacheableRange,
  peekResponseHeader,
  peekResponseRevision,
  rangeIsSerializable,
  watchEventKey,
  withHeaderRevision,
  withWatchId,
} from "./etcd-messages.js";

const {
  RangeRequest,
  RangeResponse,
  TxnRequest,
  WatchRequest,
  WatchResponse,
  LeaseKeepAliveRequest,
  LeaseKeepAliveResponse,
} = etcdserverpb;

const enc = <T>(fns: { encode(m: T): { finish(): Uint8Array } }, m: T) => Buffer.from(fns.encode(m).finish());

describe("routing peeks", () => {
  it("reads RangeRequest.serializable", () => {
    assert.equal(
      rangeIsSerializable(enc(RangeRequest, RangeRequest.fromPartial({ key: Buffer.from("a") }))),
      false,
    );
    assert.equal(
      rangeIsSerializable(
        enc(RangeRequest, RangeRequest.fromPartial({ key: Buffer.from("a"), serializable: true, limit: 5 })),
      ),
      true,
    );
  });

  it("peeks the key range of ranges at the current revision only", () => {
    const range = (fields: Parameters<typeof RangeRequest.fromPartial>[0]) =>
      peekCacheableRange(enc(RangeRequest, RangeRequest.fromPartial(fields)));
    assert.deepEqual(range({ key: Buffer.from("a"), serializable: true }), {
      key: "a",
      rangeEnd: "",
      serializable: true,
    });
    assert.deepEqual(
      range({
        key: Buffer.from([0xff, 0x00]),
        rangeEnd: Buffer.from([0xff, 0x01]),
        serializable: true,
        limit: 3,
      }),
      { key: "\u00ff\u0000", rangeEnd: "\u00ff\u0001", serializable: true },
    );
    assert.deepEqual(range({ key: Buffer.from("a") }), { key: "a", rangeEnd: "", serializable: false });
    assert.equal(range({ key: Buffer.from("a"), serializable: true, revision: 7 }), undefined);
    assert.equal(range({ key: Buffer.from("a"), revision: 7 }), undefined);
  });

  it("replaces a response header's revision and keeps every other byte", () => {
    const response = RangeResponse.fromPartial({
      header: { clusterId: 0xfeedn, memberId: 0xbeefn, revision: 5, raftTerm: 3 },
      kvs: [
        { key: Buffer.from("k"), value: Buffer.from("v"), modRevision: 4, createRevision: 2, version: 1 },
      ],
      count: 1,
    });
    const moved = RangeResponse.decode(withHeaderRevision(enc(RangeResponse, response), 300_000));
    assert.deepEqual(moved, { ...response, header: { ...response.header!, revision: 300_000n } });
  });

  it("classifies txns as etcd does, nested txns included", () => {
    const range = (serializable: boolean) => ({ requestRange: { key: Buffer.from("k"), serializable } });
    const txn = (m: Parameters<typeof TxnRequest.fromPartial>[0]) =>
      enc(TxnRequest, TxnRequest.fromPartial(m));
    assert.equal(classifyTxn(txn({ success: [range(true)], failure: [range(true)] })), "serializable-read");
    assert.equal(classifyTxn(txn({ success: [range(true)], failure: [range(false)] })), "linearizable-read");
    assert.equal(classifyTxn(txn({ compare: [{ key: Buffer.from("k") }] })), "serializable-read");
    assert.equal(
      classifyTxn(txn({ failure: [{ requestPut: { key: Buffer.from("k"), value: Buffer.from("v") } }] })),
      "write",
    );
    assert.equal(classifyTxn(txn({ success: [{ requestDeleteRange: { key: Buffer.from("k") } }] })), "write");
    const nested = { requestTxn: { success: [{ requestPut: { key: Buffer.from("deep") } }] } };
    assert.equal(classifyTxn(txn({ success: [range(true), nested] })), "write");
  });
});

describe("membership answers", () => {
  it("decodes Status with 64-bit member IDs exactly", () => {
    const memberId = 0x8e9e05c52164694dn;
    const leader = 0xfd422379fda50e48n;
    const header = new WireWriter()
      .varintField(1, 0xcdf818194e3a8c32n)
      .varintField(2, memberId)
      .varintField(3, 42)
      .varintField(4, 7)
      .finish();
    const status = new WireWriter()
      .bytesField(1, header)
      .bytesField(2, "3.4.23")
      .varintField(3, 20480)
      .varintField(4, leader)
      .varintField(5, 99)
      .varintField(6, 7)
      .varintField(10, true)
      .finish();
    const s = decodeStatusResponse(status);
    assert.equal(s.header.memberId, memberId);
    assert.equal(s.header.revision, 42);
    assert.equal(s.leader, leader);
    assert.equal(s.version, "3.4.23");
    assert.equal(s.raftTerm, 7);
    assert.equal(s.isLearner, true);
    assert.equal(peekResponseHeader(status)?.clusterId, 0xcdf818194e3a8c32n);
    assert.equal(peekResponseRevision(status), 42);
    // A header without a revision reads 0 (proto3's default); no header at all, undefined.
    const bare = new WireWriter().bytesField(1, new WireWriter().varintField(1, 5).finish()).finish();
    assert.equal(peekResponseRevision(bare), 0);
    assert.equal(peekResponseRevision(new WireWriter().varintField(3, 1).finish()), undefined);
  });

  it("decodes MemberList members and their client URLs", () => {
    const m1 = new WireWriter()
      .varintField(1, 0xaaaaaaaaaaaaaaaan)
      .bytesField(2, "a")
      .bytesField(3, "http://p1")
      .bytesField(4, "http://127.0.0.1:1")
      .bytesField(4, "http://127.0.0.1:2")
      .finish();
    const m2 = new WireWriter().varintField(1, 5).varintField(5, true).finish();
    const list = decodeMemberListResponse(new WireWriter().bytesField(2, m1).bytesField(2, m2).finish());
    assert.equal(list.members.length, 2);
    assert.equal(list.members[0]!.id, 0xaaaaaaaaaaaaaaaan);
    assert.deepEqual(list.members[0]!.clientURLs, ["http://127.0.0.1:1", "http://127.0.0.1:2"]);
    assert.equal(list.members[1]!.isLearner, true);
    assert.equal(list.members[1]!.name, "");
  });
});

describe("watch messages", () => {
  it("decodes create requests, packed or unpacked filters", () => {
    const req = enc(
      WatchRequest,
      WatchRequest.fromPartial({
        createRequest: {
          key: Buffer.from("a"),
          rangeEnd: Buffer.from("b"),
          startRevision: 12,
          filters: [etcdserverpb.WatchCreateRequest_FilterType.NODELETE],
          prevKv: true,
          watchId: 3,
          fragment: true,
          progressNotify: true,
        },
      }),
    );
    const decoded = decodeWatchRequest(req);
    assert.equal(decoded.kind, "create");
    if (decoded.kind !== "create") return;
    assert.deepEqual(decoded.create, {
      key: Buffer.from("a"),
      rangeEnd: Buffer.from("b"),
      startRevision: 12,
      progressNotify: true,
      filters: [1],
      prevKv: true,
      watchId: 3,
      fragment: true,
    });
    // Re-encoding gives what ts-proto decodes to the same request.
    const again = WatchRequest.decode(encodeWatchCreateRequest(decoded.create));
    assert.deepEqual(again.createRequest?.filters, [1]);
    assert.equal(again.createRequest?.startRevision, 12n);
    assert.equal(again.createRequest?.watchId, 3n);

    const unpacked = new WireWriter()
      .bytesField(1, new WireWriter().bytesField(1, "k").varintField(5, 0).varintField(5, 1).finish())
      .finish();
    const u = decodeWatchRequest(unpacked);
    assert.ok(u.kind === "create" && u.create.filters.join() === "0,1");
  });

  it("decodes cancel (watch 0 included) and progress requests", () => {
    assert.deepEqual(decodeWatchRequest(encodeWatchCancelRequest(0)), { kind: "cancel", watchId: 0 });
    assert.deepEqual(decodeWatchRequest(encodeWatchCancelRequest(7)), { kind: "cancel", watchId: 7 });
    assert.deepEqual(
      decodeWatchRequest(enc(WatchRequest, WatchRequest.fromPartial({ progressRequest: {} }))),
      { kind: "progress" },
    );
  });

  const kv = (rev: number) =>
    mvccpb.KeyValue.fromPartial({ key: Buffer.from(`k${rev}`), modRevision: rev, version: 1 });
  const eventsResponse = (watchId: number, revs: number[]) =>
    enc(
      WatchResponse,
      WatchResponse.fromPartial({
        header: { clusterId: 1, memberId: 2, revision: revs.at(-1) ?? 0, raftTerm: 3 },
        watchId,
        events: revs.map((r) => ({ type: mvccpb.Event_EventType.PUT, kv: kv(r) })),
      }),
    );

  it("reads event revisions and rewrites the watch ID without touching the rest", () => {
    const raw = eventsResponse(5, [10, 11]);
    const view = decodeWatchResponse(raw);
    assert.equal(view.watchId, 5);
    assert.equal(view.header?.revision, 11);
    assert.deepEqual(
      view.events.map((e) => e.modRevision),
      [10, 11],
    );
    for (const id of [0, 1, 300, -1]) {
      const rewritten = WatchResponse.decode(withWatchId(view.withoutWatchId, id));
      assert.equal(rewritten.watchId, BigInt(id));
      assert.deepEqual(rewritten.events, WatchResponse.decode(raw).events);
      assert.deepEqual(rewritten.header, WatchResponse.decode(raw).header);
    }
  });

  it("reads each event's key, binary keys and deletes included", () => {
    const raw = Buffer.from(
      WatchResponse.encode(
        WatchResponse.fromPartial({
          header: { revision: 12 },
          watchId: 3,
          events: [
            {
              type: mvccpb.Event_EventType.PUT,
              kv: { key: Buffer.from("alpha"), value: Buffer.from("v"), modRevision: 11 },
            },
            { type: mvccpb.Event_EventType.DELETE, kv: { key: Buffer.from([0x00, 0xfe]), modRevision: 12 } },
            { type: mvccpb.Event_EventType.PUT },
          ],
        }),
      ).finish(),
    );
    const view = decodeWatchResponse(raw);
    assert.deepEqual(
      view.events.map((span) => watchEventKey(raw, span)),
      ["alpha", "\u0000\u00fe", ""],
    );
  });

  it("drops events below a client's start revision", () => {
    const raw = eventsResponse(1, [10, 11, 12]);
    const view = decodeWatchResponse(raw);
    assert.equal(keepEventsFrom(raw, view, 10), undefined);
    const trimmed = WatchResponse.decode(keepEventsFrom(raw, view, 12)!);
    assert.deepEqual(
      trimmed.events.map((e) => Number(e.kv?.modRevision)),
      [12],
    );
    assert.equal(trimmed.watchId, 1n);
  });

  it("encodes the responses the gateway answers itself", () => {
    const header = decodeWatchResponse(eventsResponse(1, [9])).headerBytes;
    const created = WatchResponse.decode(
      encodeWatchResponse({ headerBytes: header, watchId: 4, created: true }),
    );
    assert.equal(created.created, true);
    assert.equal(created.watchId, 4n);
    assert.equal(created.header?.revision, 9n);
    const canceled = WatchResponse.decode(
      encodeWatchResponse({
        headerBytes: header,
        watchId: -1,
        canceled: true,
        compactRevision: 5,
        cancelReason: "x",
      }),
    );
    assert.equal(canceled.watchId, -1n);
    assert.equal(canceled.compactRevision, 5n);
    assert.equal(canceled.cancelReason, "x");
    const view = decodeWatchResponse(
      encodeWatchResponse({ headerBytes: header, watchId: 0, canceled: true }),
    );
    assert.equal(view.canceled, true);
    assert.equal(view.created, false);
  });
});

describe("lease keep-alive messages", () => {
  it("round-trips requests and responses", () => {
    assert.equal(decodeKeepAliveRequest(enc(LeaseKeepAliveRequest, { ID: 694n })), 694n);
    // etcd's lease IDs use 63 bits: they must survive exactly.
    const bigLease = 0x5e6aa212ca422c08n;
    assert.equal(decodeKeepAliveRequest(encodeKeepAliveRequest(bigLease)), bigLease);
    const raw = enc(
      LeaseKeepAliveResponse,
      LeaseKeepAliveResponse.fromPartial({ header: { revision: 3 }, ID: 77, TTL: 10 }),
    );
    assert.equal(
      decodeKeepAliveResponse(encodeKeepAliveResponse({ id: bigLease, ttl: 5, headerBytes: undefined })).id,
      bigLease,
    );
    const view = decodeKeepAliveResponse(raw);
    assert.equal(view.id, 77n);
    assert.equal(view.ttl, 10);
    const re = LeaseKeepAliveResponse.decode(encodeKeepAliveResponse({ ...view, ttl: 8 }));
    assert.equal(re.TTL, 8n);
    assert.equal(re.header?.revision, 3n);
  });
});
