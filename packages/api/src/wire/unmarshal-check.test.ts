// The request check against etcd 3.4.23's answers: each refusal below is the text etcd sent back
// (after "grpc: error unmarshalling request: ") for the same bytes, sent raw over HTTP/2.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as authpb from "../gen/authpb/auth.js";
import * as etcdserverpb from "../gen/etcdserverpb/rpc.js";
import { etcdRequestCheck, goCamelCase, unmarshalError } from "./unmarshal-check.js";

const B = (...bytes: number[]) => Uint8Array.from(bytes);
const K = [0x0a, 1, 0x6b]; // key = "k"
const varint = (n: number) => {
  const out: number[] = [];
  for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n & 0x7f) | 0x80);
  out.push(n);
  return Uint8Array.from(out);
};

describe("unmarshalError (gogo's Unmarshal, as etcd 3.4 refuses)", () => {
  const refused: [string, string, Uint8Array, string][] = [
    [
      "range_end as a varint",
      "etcdserverpb.RangeRequest",
      B(...K, 0x10, 1),
      "proto: wrong wireType = 0 for field RangeEnd",
    ],
    [
      "serializable length-delimited",
      "etcdserverpb.RangeRequest",
      B(...K, 0x3a, 1, 1),
      "proto: wrong wireType = 2 for field Serializable",
    ],
    [
      "limit as fixed64",
      "etcdserverpb.RangeRequest",
      B(...K, 0x19, 1, 2, 3, 4, 5, 6, 7, 8),
      "proto: wrong wireType = 1 for field Limit",
    ],
    ["tag 0", "etcdserverpb.RangeRequest", B(0x00, 1), "proto: RangeRequest: illegal tag 0 (wire type 0)"],
    [
      "an end group",
      "etcdserverpb.RangeRequest",
      B(0x0c),
      "proto: RangeRequest: wiretype end group for non-group",
    ],
    [
      "an unknown field's end group",
      "etcdserverpb.RangeRequest",
      B(...K, 0xfc, 0x07),
      "proto: RangeRequest: wiretype end group for non-group",
    ],
    ["wire type 6", "etcdserverpb.RangeRequest", B(...K, 0xfe, 0x07), "proto: illegal wireType 6"],
    ["wire type 7", "etcdserverpb.RangeRequest", B(...K, 0xff, 0x07), "proto: illegal wireType 7"],
    ["a group never closed", "etcdserverpb.RangeRequest", B(...K, 0xfb, 0x07, 0x08, 1), "unexpected EOF"],
    ["a cut fixed32", "etcdserverpb.RangeRequest", B(...K, 0xfd, 0x07, 1, 2), "unexpected EOF"],
    [
      "an 11-byte varint",
      "etcdserverpb.RangeRequest",
      B(...K, 0x18, ...Array(10).fill(0xff), 1),
      "proto: integer overflow",
    ],
    [
      "a negative length",
      "etcdserverpb.RangeRequest",
      B(0x0a, ...Array(9).fill(0xff), 1),
      "proto: negative length found during unmarshaling",
    ],
    [
      "a length past the end",
      "etcdserverpb.RangeRequest",
      B(0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f),
      "unexpected EOF",
    ],
    ["an 11-byte tag", "etcdserverpb.RangeRequest", B(...Array(10).fill(0xff), 1), "proto: integer overflow"],
    [
      "a tag whose number wraps",
      "etcdserverpb.RangeRequest",
      B(...K, 0xf8, 0xff, 0xff, 0xff, 0xff, 0x01, 0),
      "proto: RangeRequest: illegal tag -1 (wire type 68719476728)",
    ],
    [
      "a txn's put key as a varint",
      "etcdserverpb.TxnRequest",
      B(0x12, 4, 0x12, 2, 0x08, 1),
      "proto: wrong wireType = 0 for field Key",
    ],
    [
      "a txn op's oneof member as a varint",
      "etcdserverpb.TxnRequest",
      B(0x12, 2, 0x08, 1),
      "proto: wrong wireType = 0 for field RequestRange",
    ],
    [
      "a compare's oneof member length-delimited",
      "etcdserverpb.TxnRequest",
      B(0x0a, 2, 0x22, 0),
      "proto: wrong wireType = 2 for field Version",
    ],
    [
      "a nested range's tag 0",
      "etcdserverpb.TxnRequest",
      B(0x12, 4, 0x0a, 2, 0x00, 0),
      "proto: RangeRequest: illegal tag 0 (wire type 0)",
    ],
    ["a nested range cut short", "etcdserverpb.TxnRequest", B(0x12, 4, 0x0a, 5, 0x0a, 1), "unexpected EOF"],
    [
      "a lease ID length-delimited",
      "etcdserverpb.LeaseGrantRequest",
      B(0x12, 0),
      "proto: wrong wireType = 2 for field ID",
    ],
    [
      "peer URLs as a varint",
      "etcdserverpb.MemberAddRequest",
      B(0x08, 0),
      "proto: wrong wireType = 0 for field PeerURLs",
    ],
    [
      "a user name as a varint",
      "etcdserverpb.AuthUserAddRequest",
      B(0x08, 0),
      "proto: wrong wireType = 0 for field Name",
    ],
    [
      "an alarm action length-delimited",
      "etcdserverpb.AlarmRequest",
      B(0x0a, 0),
      "proto: wrong wireType = 2 for field Action",
    ],
    [
      "a lock name as a varint",
      "v3lockpb.LockRequest",
      B(0x08, 0),
      "proto: wrong wireType = 0 for field Name",
    ],
    [
      "a leader key's name as a varint",
      "v3electionpb.ResignRequest",
      B(0x0a, 2, 0x08, 0),
      "proto: wrong wireType = 0 for field Name",
    ],
    [
      "watch filters as fixed32",
      "etcdserverpb.WatchRequest",
      B(0x0a, 5, ...K, 0x2d, 0),
      "proto: wrong wireType = 5 for field Filters",
    ],
    [
      "a watch key as a varint",
      "etcdserverpb.WatchRequest",
      B(0x0a, 2, 0x08, 0),
      "proto: wrong wireType = 0 for field Key",
    ],
  ];
  for (const [what, type, bytes, error] of refused) {
    it(`refuses ${what}`, () => assert.equal(unmarshalError(type, bytes), error));
  }

  const accepted: [string, string, Uint8Array][] = [
    ["an unknown length-delimited field", "etcdserverpb.RangeRequest", B(...K, 0xfa, 0x07, 2, 1, 2)],
    ["an unknown group", "etcdserverpb.RangeRequest", B(...K, 0xfb, 0x07, 0x08, 1, 0xfc, 0x07)],
    ["a 10-byte varint", "etcdserverpb.RangeRequest", B(...K, 0x18, ...Array(9).fill(0xff), 1)],
    ["watch filters packed", "etcdserverpb.WatchRequest", B(0x0a, 6, ...K, 0x2a, 1, 0)],
    ["watch filters one by one", "etcdserverpb.WatchRequest", B(0x0a, 5, ...K, 0x28, 1)],
    ["a permission in a role grant", "etcdserverpb.AuthRoleGrantPermissionRequest", B(0x12, 2, 0x08, 5)],
    ["an empty message", "etcdserverpb.PutRequest", B()],
  ];
  for (const [what, type, bytes] of accepted) {
    it(`accepts ${what}`, () => assert.equal(unmarshalError(type, bytes), undefined));
  }

  it("accepts every field our own encoders write, nested txns and all", () => {
    const put = {
      key: Buffer.from("k"),
      value: Buffer.from("v"),
      lease: -5n,
      prevKv: true,
      ignoreValue: true,
      ignoreLease: true,
    };
    const range = {
      key: Buffer.from("a"),
      rangeEnd: Buffer.from("z"),
      limit: 10n,
      revision: 3n,
      sortOrder: 2,
      sortTarget: 4,
      serializable: true,
      keysOnly: true,
      countOnly: true,
      minModRevision: 1n,
      maxModRevision: 9_223_372_036_854_775_807n,
      minCreateRevision: 1n,
      maxCreateRevision: 2n,
    };
    const inner = etcdserverpb.TxnRequest.encode(
      etcdserverpb.TxnRequest.fromPartial({
        compare: [
          { result: 1, target: 0, key: Buffer.from("k"), version: 3n },
          {
            result: 2,
            target: 3,
            key: Buffer.from("k"),
            value: Buffer.from("v"),
            rangeEnd: Buffer.from("z"),
          },
          { result: 3, target: 4, key: Buffer.from("k"), lease: 7n },
        ],
        success: [{ requestRange: range }, { requestPut: put }],
        failure: [
          { requestDeleteRange: { key: Buffer.from("k"), rangeEnd: Buffer.from("z"), prevKv: true } },
        ],
      }),
    ).finish();
    const txn = etcdserverpb.TxnRequest.encode(
      etcdserverpb.TxnRequest.fromPartial({
        success: [{ requestTxn: etcdserverpb.TxnRequest.decode(inner) }],
      }),
    ).finish();
    assert.equal(unmarshalError("etcdserverpb.TxnRequest", txn), undefined);
    const watch = etcdserverpb.WatchRequest.encode(
      etcdserverpb.WatchRequest.fromPartial({
        createRequest: {
          key: Buffer.from("k"),
          rangeEnd: Buffer.from("z"),
          startRevision: 5n,
          progressNotify: true,
          filters: [0, 1],
          prevKv: true,
          watchId: 3n,
          fragment: true,
        },
      }),
    ).finish();
    assert.equal(unmarshalError("etcdserverpb.WatchRequest", watch), undefined);
    const grant = etcdserverpb.AuthRoleGrantPermissionRequest.encode({
      name: "r",
      perm: authpb.Permission.create({ permType: 2, key: Buffer.from("k"), rangeEnd: Buffer.from("z") }),
    }).finish();
    assert.equal(unmarshalError("etcdserverpb.AuthRoleGrantPermissionRequest", grant), undefined);
  });

  it("refuses txns nested deeper than our decoders go, as they would, without exhausting the stack", () => {
    const nested = (levels: number) => {
      let txn = etcdserverpb.TxnRequest.encode(etcdserverpb.TxnRequest.fromPartial({})).finish();
      for (let i = 0; i < levels; i++) {
        const op = Buffer.concat([B(0x22), varint(txn.length), txn]); // RequestOp.request_txn
        txn = Buffer.concat([B(0x12), varint(op.length), op]); // TxnRequest.success
      }
      return txn;
    };
    // 49 levels of Txn-in-RequestOp: 99 messages deep, the decoder's last good depth.
    assert.equal(unmarshalError("etcdserverpb.TxnRequest", nested(49)), undefined);
    assert.doesNotThrow(() => etcdserverpb.TxnRequest.decode(nested(49)));
    assert.equal(
      unmarshalError("etcdserverpb.TxnRequest", nested(50)),
      "protobuf decode recursion limit exceeded",
    );
    assert.throws(() => etcdserverpb.TxnRequest.decode(nested(50)), /recursion limit/);
    assert.equal(
      unmarshalError("etcdserverpb.TxnRequest", nested(1_000)),
      "protobuf decode recursion limit exceeded",
    );
  });

  it("checks a request by its gRPC path; other paths have no check", () => {
    const check = etcdRequestCheck("/etcdserverpb.KV/Put");
    assert.equal(check?.(B(0x08, 1)), "proto: wrong wireType = 0 for field Key");
    assert.equal(
      check?.(
        etcdserverpb.PutRequest.encode(
          etcdserverpb.PutRequest.fromPartial({ key: Buffer.from("k"), value: Buffer.from("v") }),
        ).finish(),
      ),
      undefined,
    );
    assert.equal(
      etcdRequestCheck("/etcdserverpb.Watch/Watch")?.(B(0x0a, 2, 0x08, 0)),
      "proto: wrong wireType = 0 for field Key",
    );
    assert.equal(etcdRequestCheck("/grpc.health.v1.Health/Check"), undefined);
    assert.equal(etcdRequestCheck("/etcdserverpb.KV/Nope"), undefined);
  });
});

describe("goCamelCase (protoc-gen-go's names in gogo's errors)", () => {
  it("names fields as etcd's Go structs do", () => {
    for (const [proto, go] of [
      ["range_end", "RangeEnd"],
      ["peerURLs", "PeerURLs"],
      ["ID", "ID"],
      ["prev_kv", "PrevKv"],
      ["request_delete_range", "RequestDeleteRange"],
      ["permType", "PermType"],
      ["TTL", "TTL"],
      ["watch_id", "WatchId"],
      ["hash_kv2", "HashKv2"],
      ["_x", "XX"],
    ]) {
      assert.equal(goCamelCase(proto!), go);
    }
  });
});
