// The JSON gateway's translation, checked against bodies captured from etcd 3.4.23's gateway
// (moved here from the gateway with the codec: one JSON codec for the project).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { JsonFormatError } from "./json-codec.js";
import { jsonToWire, wireToJson } from "./json-wire.js";
import { etcdserverpb, WireWriter } from "./mod.js";

// Byte-exact bodies captured from etcd 3.4.23's gateway (curl against a real member).
const ETCD_RANGE_RESPONSE =
  '{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"2","raft_term":"2"},' +
  '"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}';

function header(w: WireWriter): WireWriter {
  return w.bytesField(
    1,
    new WireWriter()
      .varintField(1, 14841639068965178418n)
      .varintField(2, 10276657743932975437n)
      .varintField(3, 2)
      .varintField(4, 2)
      .finish(),
  );
}

describe("wireToJson", () => {
  it("prints a RangeResponse exactly as etcd's gateway does, 64-bit IDs intact", () => {
    const kv = new WireWriter()
      .bytesField(1, "foo")
      .varintField(2, 2)
      .varintField(3, 2)
      .varintField(4, 1)
      .bytesField(5, "bar")
      .finish();
    const raw = header(new WireWriter()).bytesField(2, kv).varintField(4, 1).finish();
    assert.equal(JSON.stringify(wireToJson("etcdserverpb.RangeResponse", raw)), ETCD_RANGE_RESPONSE);
  });

  it("keeps proto names that are not snake_case, prints enums by name and omits zero enums", () => {
    const raw = header(new WireWriter()).varintField(2, 7587899148717610762n).varintField(3, 30).finish();
    assert.equal(
      JSON.stringify(wireToJson("etcdserverpb.LeaseGrantResponse", raw)),
      '{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"2","raft_term":"2"},"ID":"7587899148717610762","TTL":"30"}',
    );
    // events[0] is a DELETE, events[1] a PUT (type 0, omitted as etcd omits it).
    const watch = Buffer.concat([
      new WireWriter().bytesField(11, new WireWriter().varintField(1, 1).finish()).finish(),
      new WireWriter().bytesField(11, Buffer.alloc(0)).finish(),
    ]);
    assert.deepEqual(wireToJson("etcdserverpb.WatchResponse", watch), {
      events: [{ type: "DELETE" }, {}],
    });
  });

  it("prints a set oneof member even when it is zero (Compare.version = 0)", () => {
    const raw = new WireWriter().varintField(2, 0).bytesField(3, "k").varintField(4, 0).finish();
    assert.deepEqual(wireToJson("etcdserverpb.Compare", raw), { key: "aw==", version: "0" });
  });

  it("prints negative int64 (watch_id -1) as a signed string", () => {
    const raw = new WireWriter().varintField(2, -1).varintField(3, true).finish();
    assert.deepEqual(wireToJson("etcdserverpb.WatchResponse", raw), { watch_id: "-1", created: true });
  });
});

describe("jsonToWire", () => {
  const decodeRange = (json: unknown) =>
    etcdserverpb.RangeRequest.decode(jsonToWire("etcdserverpb.RangeRequest", json));

  it("accepts proto names and lowerCamelCase names, numbers and strings for integers, enums by name or number", () => {
    const a = decodeRange({
      key: "Zm9v",
      range_end: "Zm9w",
      limit: "5",
      sort_order: "DESCEND",
      keys_only: true,
    });
    const b = decodeRange({ key: "Zm9v", rangeEnd: "Zm9w", limit: 5, sortOrder: 2, keysOnly: true });
    assert.deepEqual(a, b);
    assert.equal(a.key.toString(), "foo");
    assert.equal(a.limit, 5n);
    assert.equal(a.sortOrder, etcdserverpb.RangeRequest_SortOrder.DESCEND);
  });

  it("keeps 64-bit lease IDs exact; bytes in standard base64 only, as etcd 3.4 reads them", () => {
    const raw = jsonToWire("etcdserverpb.LeaseKeepAliveRequest", { ID: "7587899148717610762" });
    assert.deepEqual(raw, new WireWriter().varintField(1, 7587899148717610762n).finish());
    const put = etcdserverpb.PutRequest.decode(
      jsonToWire("etcdserverpb.PutRequest", { key: "+/8=", value: null }),
    );
    assert.deepEqual([...put.key], [0xfb, 0xff]);
    assert.throws(() => jsonToWire("etcdserverpb.PutRequest", { key: "-_8=" }), {
      message: "illegal base64 data at input byte 0",
    });
  });

  it("builds nested messages and oneofs (a txn)", () => {
    const raw = jsonToWire("etcdserverpb.TxnRequest", {
      compare: [{ key: "Zm9v", result: "EQUAL", target: "VALUE", value: "YmFy" }],
      success: [{ requestPut: { key: "Zm9v", value: "YmF6" } }],
      failure: [{ request_range: { key: "Zm9v" } }],
    });
    const txn = etcdserverpb.TxnRequest.decode(raw);
    assert.equal(txn.compare[0]!.target, etcdserverpb.Compare_CompareTarget.VALUE);
    assert.equal(txn.compare[0]!.value?.toString(), "bar");
    assert.equal(txn.success[0]!.requestPut?.value.toString(), "baz");
    assert.equal(txn.failure[0]!.requestRange?.key.toString(), "foo");
  });

  it("rejects what grpc-gateway rejects", () => {
    const bad = [
      { key: "Zm9v", limit: 1.5 },
      { key: "Zm9v", serializable: "true" },
      { key: "nope!" },
      { key: "Zm9v", sort_order: "SIDEWAYS" },
      { key: 5 },
      [],
      { key: "Zm9v", limit: "99999999999999999999" },
    ];
    for (const json of bad)
      assert.throws(
        () => jsonToWire("etcdserverpb.RangeRequest", json),
        JsonFormatError,
        JSON.stringify(json),
      );
    assert.throws(
      () => jsonToWire("etcdserverpb.Compare", { version: "1", mod_revision: "2" }),
      /oneof target_union already set/,
    );
  });

  it("ignores unknown fields, as etcd 3.4 does", () => {
    assert.equal(decodeRange({ key: "Zm9v", bogus: 1 }).key.toString(), "foo");
  });
});
