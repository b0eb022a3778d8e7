// Wire compatibility with etcd: the generated codecs must produce and accept exactly the
// bytes etcd's Go code does. Every expected byte string here is built by hand from etcd's
// field numbers (api/etcdserverpb/rpc.proto, api/mvccpb/kv.proto) with a few lines of
// varint code, independent of the protobuf library under test.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { etcdserverpb, mvccpb, peer, v3electionpb, v3lockpb } from "./mod.js";

/** Base-128 varint of a non-negative bigint, or of a negative int64 as its 10-byte two's complement. */
function varint(value: number | bigint): number[] {
  let v = BigInt(value);
  if (v < 0n) v += 1n << 64n;
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number((v & 0x7fn) | 0x80n));
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}
const VARINT = 0;
const LEN = 2;
const tag = (field: number, wireType: number) => varint((field << 3) | wireType);
const u = (field: number, value: number | bigint) => [...tag(field, VARINT), ...varint(value)];
const bytes = (field: number, data: string | number[]) => {
  const b = typeof data === "string" ? [...Buffer.from(data)] : data;
  return [...tag(field, LEN), ...varint(b.length), ...b];
};
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("etcd wire format", () => {
  it("RangeRequest: the bytes etcd's Go client sends", () => {
    const expected = Buffer.from("0a03666f6f120366 6f70180a20053801".replaceAll(" ", ""), "hex");
    assert.deepEqual(
      expected,
      Buffer.from([...bytes(1, "foo"), ...bytes(2, "fop"), ...u(3, 10), ...u(4, 5), ...u(7, 1)]),
    );
    const req: etcdserverpb.RangeRequest = {
      ...etcdserverpb.RangeRequest.create(),
      key: Buffer.from("foo"),
      rangeEnd: Buffer.from("fop"),
      limit: 10n,
      revision: 5n,
      serializable: true,
    };
    assert.equal(hex(etcdserverpb.RangeRequest.encode(req).finish()), hex(expected));

    const decoded = etcdserverpb.RangeRequest.decode(expected);
    assert.deepEqual(decoded, req);
    // env=node: bytes fields decode to Buffers, which the server compares and prints.
    assert.ok(Buffer.isBuffer(decoded.key));
    assert.equal(decoded.sortOrder, etcdserverpb.RangeRequest_SortOrder.NONE);
  });

  it("RangeRequest: sort options and the 3.1 revision filters use etcd's numbers", () => {
    const wire = Buffer.from([
      ...bytes(1, "a"),
      ...u(5, 2), // sort_order DESCEND
      ...u(6, 3), // sort_target MOD
      ...u(8, 1), // keys_only
      ...u(9, 1), // count_only
      ...u(10, 11),
      ...u(11, 12),
      ...u(12, 13),
      ...u(13, 14),
    ]);
    const req = etcdserverpb.RangeRequest.decode(wire);
    assert.equal(req.sortOrder, etcdserverpb.RangeRequest_SortOrder.DESCEND);
    assert.equal(req.sortTarget, etcdserverpb.RangeRequest_SortTarget.MOD);
    assert.deepEqual(
      [
        req.keysOnly,
        req.countOnly,
        req.minModRevision,
        req.maxModRevision,
        req.minCreateRevision,
        req.maxCreateRevision,
      ],
      [true, true, 11n, 12n, 13n, 14n],
    );
    assert.equal(hex(etcdserverpb.RangeRequest.encode(req).finish()), hex(wire));
  });

  it("PutRequest with a lease above 2^32 and prev_kv", () => {
    const lease = 123_456_789_012_345; // > 2^32, < 2^53
    const expected = Buffer.from([...bytes(1, "foo"), ...bytes(2, "bar"), ...u(3, lease), ...u(4, 1)]);
    const req = etcdserverpb.PutRequest.create({
      key: Buffer.from("foo"),
      value: Buffer.from("bar"),
      lease,
      prevKv: true,
    });
    assert.equal(hex(etcdserverpb.PutRequest.encode(req).finish()), hex(expected));
    assert.deepEqual(etcdserverpb.PutRequest.decode(expected), req);

    const ignore = Buffer.from([...bytes(1, "k"), ...u(5, 1), ...u(6, 1)]);
    const decoded = etcdserverpb.PutRequest.decode(ignore);
    assert.equal(decoded.ignoreValue, true);
    assert.equal(decoded.ignoreLease, true);
  });

  it("WatchRequest.create_request with filters (packed, as Go sends them), watch_id and fragment", () => {
    const create = [
      ...bytes(1, "a"),
      ...bytes(2, "b"),
      ...u(3, 7),
      ...u(4, 1),
      ...bytes(5, [0, 1]), // filters: NOPUT, NODELETE, packed
      ...u(6, 1),
      ...u(7, 42),
      ...u(8, 1),
    ];
    const expected = Buffer.from(bytes(1, create));
    const req = etcdserverpb.WatchRequest.create({
      createRequest: etcdserverpb.WatchCreateRequest.create({
        key: Buffer.from("a"),
        rangeEnd: Buffer.from("b"),
        startRevision: 7,
        progressNotify: true,
        filters: [
          etcdserverpb.WatchCreateRequest_FilterType.NOPUT,
          etcdserverpb.WatchCreateRequest_FilterType.NODELETE,
        ],
        prevKv: true,
        watchId: 42,
        fragment: true,
      }),
    });
    assert.equal(hex(etcdserverpb.WatchRequest.encode(req).finish()), hex(expected));
    const decoded = etcdserverpb.WatchRequest.decode(expected);
    assert.deepEqual(decoded.createRequest, req.createRequest);
    assert.equal(decoded.cancelRequest, undefined);
    assert.equal(decoded.progressRequest, undefined);

    // Parsers must accept the unpacked form of a repeated enum too.
    const unpacked = Buffer.from(bytes(1, [...u(5, 0), ...u(5, 1)]));
    assert.deepEqual(etcdserverpb.WatchRequest.decode(unpacked).createRequest?.filters, [0, 1]);
  });

  it("WatchRequest cancel and progress (3.4) members of the oneof", () => {
    const cancel = Buffer.from(bytes(2, u(1, 42)));
    assert.equal(etcdserverpb.WatchRequest.decode(cancel).cancelRequest?.watchId, 42n);
    // An empty WatchProgressRequest is still present: field 3 with length 0.
    const progress = Buffer.from(bytes(3, []));
    const decoded = etcdserverpb.WatchRequest.decode(progress);
    assert.deepEqual(decoded.progressRequest, {});
    assert.equal(hex(etcdserverpb.WatchRequest.encode(decoded).finish()), hex(progress));
  });

  it("ResponseHeader with uint64 cluster and member IDs using all 64 bits", () => {
    const header = {
      clusterId: 0x1234_5678_9abc_def0n,
      memberId: 0xfedc_ba98_7654_3210n,
      revision: 12n,
      raftTerm: 3n,
    };
    const expected = Buffer.from([
      ...u(1, header.clusterId),
      ...u(2, header.memberId),
      ...u(3, header.revision),
      ...u(4, header.raftTerm),
    ]);
    assert.equal(hex(etcdserverpb.ResponseHeader.encode(header).finish()), hex(expected));
    assert.deepEqual(etcdserverpb.ResponseHeader.decode(expected), header);
  });

  it("int64 policy: every 64-bit value decodes and encodes exactly", () => {
    // etcd's own cluster IDs are full 64-bit hashes, e.g. 14841639068965178418.
    const wire = Buffer.from(u(1, 14841639068965178418n));
    assert.equal(etcdserverpb.ResponseHeader.decode(wire).clusterId, 14841639068965178418n);
    assert.equal(
      hex(
        etcdserverpb.ResponseHeader.encode({
          clusterId: 14841639068965178418n,
          memberId: 0n,
          revision: 0n,
          raftTerm: 0n,
        }).finish(),
      ),
      hex(wire),
    );
    // A lease ID a client picked itself can be any int64.
    for (const id of [-(2n ** 62n), 2n ** 63n - 1n, -(2n ** 63n), 2n ** 53n + 1n]) {
      const grant = Buffer.from([...u(1, 60), ...u(2, BigInt.asUintN(64, id))]);
      const decoded = etcdserverpb.LeaseGrantRequest.decode(grant);
      assert.equal(decoded.ID, id);
      assert.equal(hex(etcdserverpb.LeaseGrantRequest.encode(decoded).finish()), hex(grant));
    }
  });

  it("negative int64 (TTL -1 for a missing lease) is a 10-byte varint, as in Go", () => {
    const expected = Buffer.from([...u(2, 7), ...u(3, -1)]);
    assert.equal(expected.length, 2 + 1 + 10);
    const res = etcdserverpb.LeaseTimeToLiveResponse.create({ ID: 7n, TTL: -1n });
    assert.equal(hex(etcdserverpb.LeaseTimeToLiveResponse.encode(res).finish()), hex(expected));
    assert.equal(etcdserverpb.LeaseTimeToLiveResponse.decode(expected).TTL, -1n);
  });

  it('Compare keeps oneof presence: version = 0 ("key absent") is on the wire', () => {
    const cmp = etcdserverpb.Compare.create({
      result: etcdserverpb.Compare_CompareResult.EQUAL,
      target: etcdserverpb.Compare_CompareTarget.VERSION,
      key: Buffer.from("k"),
      version: 0,
    });
    const expected = Buffer.from([...bytes(3, "k"), ...u(4, 0)]);
    assert.equal(hex(etcdserverpb.Compare.encode(cmp).finish()), hex(expected));
    const decoded = etcdserverpb.Compare.decode(expected);
    assert.equal(decoded.version, 0n);
    assert.equal(decoded.modRevision, undefined);
    // Without the oneof member the field is absent, not zero.
    assert.equal(etcdserverpb.Compare.decode(Buffer.from(bytes(3, "k"))).version, undefined);
  });

  it("Compare.range_end is field 64 (a two-byte tag)", () => {
    const expected = Buffer.from([...bytes(3, "a"), ...u(6, 9), ...bytes(64, "b")]);
    assert.deepEqual(tag(64, LEN), [0x82, 0x04]);
    const cmp = etcdserverpb.Compare.create({
      target: etcdserverpb.Compare_CompareTarget.MOD,
      key: Buffer.from("a"),
      modRevision: 9,
      rangeEnd: Buffer.from("b"),
    });
    // target MOD = 2 precedes key in field order.
    const withTarget = Buffer.from([...u(2, 2), ...expected]);
    assert.equal(hex(etcdserverpb.Compare.encode(cmp).finish()), hex(withTarget));
  });

  it("TxnRequest: compare, success with request_put, failure with request_range", () => {
    const put = [...bytes(1, "k"), ...bytes(2, "v")];
    const range = bytes(1, "k");
    const expected = Buffer.from([
      ...bytes(1, [...bytes(3, "k"), ...u(4, 0)]),
      ...bytes(2, bytes(2, put)),
      ...bytes(3, bytes(1, range)),
    ]);
    const txn = etcdserverpb.TxnRequest.decode(expected);
    assert.equal(txn.compare[0]?.version, 0n);
    assert.equal(txn.success[0]?.requestPut?.value.toString(), "v");
    assert.equal(txn.failure[0]?.requestRange?.key.toString(), "k");
    assert.equal(hex(etcdserverpb.TxnRequest.encode(txn).finish()), hex(expected));
  });

  it("WatchResponse events use mvccpb field numbers, events at 11", () => {
    const kv = [...bytes(1, "k"), ...u(2, 2), ...u(3, 5), ...u(4, 3), ...bytes(5, "v"), ...u(6, 77)];
    const event = [...u(1, 1), ...bytes(2, kv)]; // DELETE
    const expected = Buffer.from([
      ...bytes(1, u(3, 5)),
      ...u(2, 9),
      ...u(5, 4),
      ...bytes(6, "compacted"),
      ...u(7, 1),
      ...bytes(11, event),
    ]);
    const res = etcdserverpb.WatchResponse.decode(expected);
    assert.equal(res.events[0]?.type, mvccpb.Event_EventType.DELETE);
    assert.deepEqual(res.events[0]?.kv, {
      key: Buffer.from("k"),
      createRevision: 2n,
      modRevision: 5n,
      version: 3n,
      value: Buffer.from("v"),
      lease: 77n,
    });
    assert.equal(res.cancelReason, "compacted");
    assert.equal(res.fragment, true);
    assert.equal(hex(etcdserverpb.WatchResponse.encode(res).finish()), hex(expected));
  });

  it("Member, StatusResponse and AuthUserAddRequest fields by etcd's numbers", () => {
    const member = [
      ...u(1, 5),
      ...bytes(2, "m1"),
      ...bytes(3, "http://p"),
      ...bytes(4, "http://c"),
      ...u(5, 1),
    ];
    const list = etcdserverpb.MemberListResponse.decode(Buffer.from(bytes(2, member)));
    assert.deepEqual(list.members[0], {
      ID: 5n,
      name: "m1",
      peerURLs: ["http://p"],
      clientURLs: ["http://c"],
      isLearner: true,
    });

    const status = etcdserverpb.StatusResponse.decode(
      Buffer.from([
        ...bytes(2, "3.4.0"),
        ...u(3, 4096),
        ...u(4, 5),
        ...u(5, 100),
        ...u(6, 2),
        ...u(7, 99),
        ...bytes(8, "NOSPACE"),
        ...u(9, 2048),
        ...u(10, 1),
        ...bytes(11, "3.6.0"),
        ...u(12, 8192),
        ...bytes(13, [...u(1, 1), ...bytes(2, "3.5.0")]),
      ]),
    );
    assert.deepEqual(
      [
        status.version,
        status.dbSize,
        status.leader,
        status.raftIndex,
        status.raftTerm,
        status.raftAppliedIndex,
      ],
      ["3.4.0", 4096n, 5n, 100n, 2n, 99n],
    );
    assert.deepEqual([status.errors, status.dbSizeInUse, status.isLearner], [["NOSPACE"], 2048n, true]);
    assert.deepEqual([status.storageVersion, status.dbSizeQuota], ["3.6.0", 8192n]);
    assert.deepEqual(status.downgradeInfo, { enabled: true, targetVersion: "3.5.0" });

    const add = etcdserverpb.AuthUserAddRequest.decode(
      Buffer.from([...bytes(1, "u"), ...bytes(2, "p"), ...bytes(3, u(1, 1)), ...bytes(4, "h")]),
    );
    assert.deepEqual(add, { name: "u", password: "p", options: { noPassword: true }, hashedPassword: "h" });
  });

  it("Lease and Election/Lock messages", () => {
    const ka = etcdserverpb.LeaseKeepAliveResponse.decode(Buffer.from([...u(2, 8), ...u(3, 30)]));
    assert.deepEqual([ka.ID, ka.TTL], [8n, 30n]);
    const ttl = etcdserverpb.LeaseTimeToLiveResponse.decode(
      Buffer.from([...u(4, 60), ...bytes(5, "a"), ...bytes(5, "b")]),
    );
    assert.equal(ttl.grantedTTL, 60n);
    assert.deepEqual(
      ttl.keys.map((k) => k.toString()),
      ["a", "b"],
    );
    const leader = v3electionpb.LeaderKey.decode(
      Buffer.from([...bytes(1, "e"), ...bytes(2, "e/1"), ...u(3, 4), ...u(4, 9)]),
    );
    assert.deepEqual(leader, { name: Buffer.from("e"), key: Buffer.from("e/1"), rev: 4n, lease: 9n });
    const lock = v3lockpb.LockRequest.decode(Buffer.from([...bytes(1, "l"), ...u(2, 9)]));
    assert.deepEqual(lock, { name: Buffer.from("l"), lease: 9n });
  });

  it("skips fields it does not know (a newer client's), as proto3 requires", () => {
    const wire = Buffer.from([...bytes(1, "foo"), ...u(99, 5), ...bytes(100, "x"), ...u(3, 2)]);
    const req = etcdserverpb.RangeRequest.decode(wire);
    assert.equal(req.key.toString(), "foo");
    assert.equal(req.limit, 2n);
  });

  it("peer.RaftBatch carries Raft messages as opaque bytes", () => {
    const m1 = [1, 2, 3];
    const m2 = [4];
    const expected = Buffer.from([
      ...u(1, 0xabcdef012345),
      ...u(2, 1),
      ...u(3, 2),
      ...bytes(4, m1),
      ...bytes(4, m2),
    ]);
    const batch = peer.RaftBatch.create({
      clusterId: 0xabcdef012345,
      from: 1,
      to: 2,
      messages: [Buffer.from(m1), Buffer.from(m2)],
    });
    assert.equal(hex(peer.RaftBatch.encode(batch).finish()), hex(expected));
    const chunk = peer.SnapshotChunk.decode(Buffer.from(bytes(3, u(1, 0xffffffff))));
    assert.equal(chunk.trailer?.crc32c, 0xffffffff);
    assert.equal(chunk.data, undefined);
  });
});
