import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as authpbModule from "./gen/authpb/auth.js";
import * as rpcModule from "./gen/etcdserverpb/rpc.js";
import { JSON_ENUMS, JSON_MESSAGES } from "./gen/json-fields.js";
import * as kvModule from "./gen/mvccpb/kv.js";
import * as electionModule from "./gen/v3electionpb/v3election.js";
import * as lockModule from "./gen/v3lockpb/v3lock.js";
import { JsonNumber } from "./go-json.js";
import { goBase64, type JsonField } from "./json-codec.js";
import { etcdserverpb, fromEtcdJson, HTTP_ROUTES, JsonFormatError, toEtcdJson } from "./mod.js";

interface Codec {
  encode(message: unknown): { finish(): Uint8Array };
  decode(input: Uint8Array): unknown;
}
const MODULES: Record<string, Record<string, unknown>> = {
  etcdserverpb: rpcModule,
  mvccpb: kvModule,
  authpb: authpbModule,
  v3electionpb: electionModule,
  v3lockpb: lockModule,
};
/** ts-proto's codec for a message full name ("etcdserverpb.Compare"; nested types joined by "_"). */
function codecOf(typeName: string): Codec {
  const [pkg, ...rest] = typeName.split(".");
  const codec = MODULES[pkg!]?.[rest.join("_")] as Codec | undefined;
  if (codec === undefined) throw new Error(`no generated codec for ${typeName}`);
  return codec;
}

describe("etcd JSON codec", () => {
  it("prints a RangeResponse as etcd's gateway does", () => {
    const res: etcdserverpb.RangeResponse = {
      header: { clusterId: 0x1234_5678_9abcn, memberId: 2n, revision: 5n, raftTerm: 0n },
      kvs: [
        {
          key: Buffer.from("foo"),
          createRevision: 2n,
          modRevision: 5n,
          version: 2n,
          value: Buffer.from("bar"),
          lease: 0n,
        },
      ],
      more: false,
      count: 1n,
    };
    assert.deepEqual(toEtcdJson("etcdserverpb.RangeResponse", res), {
      header: { cluster_id: "20015998343868", member_id: "2", revision: "5" },
      kvs: [{ key: "Zm9v", create_revision: "2", mod_revision: "5", version: "2", value: "YmFy" }],
      count: "1",
    });
  });

  it("keeps etcd's field names that are not snake_case (TTL, ID, peerURLs)", () => {
    assert.deepEqual(toEtcdJson("etcdserverpb.LeaseGrantResponse", { ID: 7, TTL: 60, error: "" }), {
      ID: "7",
      TTL: "60",
    });
    assert.deepEqual(
      toEtcdJson("etcdserverpb.Member", {
        ID: 1,
        name: "a",
        peerURLs: ["http://x"],
        clientURLs: [],
        isLearner: true,
      }),
      { ID: "1", name: "a", peerURLs: ["http://x"], isLearner: true },
    );
    assert.deepEqual(toEtcdJson("etcdserverpb.LeaseCheckpoint", { ID: 1n, remainingTTL: 3n }), {
      ID: "1",
      remaining_TTL: "3",
    });
  });

  it("prints enums by name, and a oneof member even when zero", () => {
    const cmp = fromEtcdJson("etcdserverpb.Compare", { key: "aw==", target: "MOD", mod_revision: "0" });
    assert.equal(cmp.modRevision, 0n);
    assert.deepEqual(toEtcdJson("etcdserverpb.Compare", cmp), {
      target: "MOD",
      key: "aw==",
      mod_revision: "0",
    });
    const event = { type: 1, kv: undefined, prevKv: undefined };
    assert.deepEqual(toEtcdJson("mvccpb.Event", event), { type: "DELETE" });
    // An empty message that is present stays present (a progress request, a header of zeros).
    assert.deepEqual(toEtcdJson("etcdserverpb.WatchRequest", { progressRequest: {} }), {
      progress_request: {},
    });
  });

  it("parses a request as curl users write it (etcd's documented examples)", () => {
    // From etcd's dev-guide/api_grpc_gateway.md.
    const put = fromEtcdJson("etcdserverpb.PutRequest", { key: "Zm9v", value: "YmFy" });
    assert.deepEqual(put, {
      key: Buffer.from("foo"),
      value: Buffer.from("bar"),
      lease: 0n,
      prevKv: false,
      ignoreValue: false,
      ignoreLease: false,
    });
    const watch = fromEtcdJson("etcdserverpb.WatchRequest", { create_request: { key: "Zm9v" } });
    const encoded = etcdserverpb.WatchRequest.encode(watch as etcdserverpb.WatchRequest).finish();
    assert.equal(etcdserverpb.WatchRequest.decode(encoded).createRequest?.key.toString(), "foo");
  });

  it("accepts both names (the lowerCamelCase one when both are given), integers as strings or numbers", () => {
    const a = fromEtcdJson("etcdserverpb.RangeRequest", {
      range_end: "/+8=",
      limit: "10",
      revision: new JsonNumber("5"),
      sortOrder: "DESCEND",
      sort_target: 3,
      keysOnly: true,
      max_mod_revision: " 7",
      min_mod_revision: "null",
    });
    assert.deepEqual(a.rangeEnd, Buffer.from([0xff, 0xef]));
    assert.deepEqual(
      [a.limit, a.revision, a.sortOrder, a.sortTarget, a.keysOnly, a.maxModRevision, a.minModRevision],
      [10n, 5n, 2, 3, true, 7n, 0n],
    );
    // jsonpb favours the camelName whichever comes first.
    for (const json of [
      { key: "YQ==", range_end: "Yg==", rangeEnd: "Yw==" },
      { key: "YQ==", rangeEnd: "Yw==", range_end: "Yg==" },
    ]) {
      assert.equal(String(fromEtcdJson("etcdserverpb.RangeRequest", json).rangeEnd), "c");
    }
  });

  it("decodes bytes as Go's base64.StdEncoding: padded, standard alphabet, CR and LF skipped", () => {
    assert.deepEqual(goBase64("Zm9v\nYg=="), Buffer.from("foob"));
    assert.deepEqual(goBase64("Zh=="), Buffer.from("f"), "bits past the last byte are not checked");
    assert.deepEqual(goBase64(""), Buffer.alloc(0));
    // Offsets as etcd 3.4.23 answered them (curl to /v3/kv/range).
    for (const [text, at] of [
      ["-_8=", 0],
      ["Zm8", 0],
      ["Z", 0],
      ["Zg=", 3],
      ["Zg==x", 4],
      ["!!!", 0],
      ["not base64!", 3],
    ] as const) {
      assert.throws(() => goBase64(text), { message: `illegal base64 data at input byte ${at}` }, text);
    }
  });

  it("ignores unknown fields and treats null as absent, as etcd 3.4's gateway does", () => {
    const r = fromEtcdJson("etcdserverpb.RangeRequest", { key: "YQ==", bogus: 1, limit: null });
    assert.equal(r.limit, 0n);
    assert.equal(r.bogus, undefined);
    // null for a whole message is an empty one (encoding/json leaves a nil map), in a list too.
    assert.deepEqual(fromEtcdJson("etcdserverpb.LeaseRevokeRequest", null), { ID: 0n });
    const txn = fromEtcdJson("etcdserverpb.TxnRequest", { success: [null], compare: [] });
    assert.deepEqual(txn.success, [{}]);
  });

  it("reads 64-bit integers exactly over their whole range, and refuses what is out of range", () => {
    for (const [ID, want] of [
      ["9007199254740993", 9007199254740993n],
      ["7587848425425381380", 7587848425425381380n],
      ["9223372036854775807", 2n ** 63n - 1n],
      ["-9223372036854775808", -(2n ** 63n)],
      [2 ** 60, 2n ** 60n],
    ] as const) {
      const req = fromEtcdJson("etcdserverpb.LeaseGrantRequest", { TTL: 5, ID });
      assert.equal(req.ID, want);
      assert.deepEqual(toEtcdJson("etcdserverpb.LeaseGrantRequest", req), { TTL: "5", ID: want.toString() });
    }
    assert.equal(
      fromEtcdJson("etcdserverpb.ResponseHeader", { member_id: "18446744073709551615" }).memberId,
      2n ** 64n - 1n,
    );
    for (const [type, json] of [
      ["etcdserverpb.LeaseGrantRequest", { ID: "9223372036854775808" }],
      ["etcdserverpb.ResponseHeader", { member_id: "18446744073709551616" }],
      ["etcdserverpb.ResponseHeader", { member_id: "-1" }],
    ] as const) {
      assert.throws(() => fromEtcdJson(type, json), JsonFormatError);
    }
  });

  it("refuses what etcd 3.4's gateway refuses, worded as it words it", () => {
    // Messages as etcd 3.4.23 answered the same bodies (curl to its client port), or as
    // encoding/json and jsonpb word them for the cases not tried there.
    const bad: [string, unknown, string | RegExp][] = [
      [
        "etcdserverpb.RangeRequest",
        { serializable: "false" },
        "json: cannot unmarshal string into Go value of type bool",
      ],
      [
        "etcdserverpb.RangeRequest",
        { serializable: new JsonNumber("1") },
        "json: cannot unmarshal number into Go value of type bool",
      ],
      [
        "etcdserverpb.RangeRequest",
        { limit: new JsonNumber("1.5") },
        "json: cannot unmarshal number 1.5 into Go value of type int64",
      ],
      [
        "etcdserverpb.RangeRequest",
        { limit: new JsonNumber("1E2") },
        "json: cannot unmarshal number 1E2 into Go value of type int64",
      ],
      [
        "etcdserverpb.RangeRequest",
        { limit: true },
        "json: cannot unmarshal bool into Go value of type int64",
      ],
      ["etcdserverpb.RangeRequest", { limit: "abc" }, "invalid character 'a' looking for beginning of value"],
      [
        "etcdserverpb.RangeRequest",
        { limit: "ten" },
        "invalid character 'e' in literal true (expecting 'r')",
      ],
      ["etcdserverpb.RangeRequest", { limit: "" }, "unexpected end of JSON input"],
      ["etcdserverpb.RangeRequest", { limit: "5 6" }, "invalid character '6' after top-level value"],
      [
        "etcdserverpb.RangeRequest",
        { limit: "99999999999999999999" },
        "json: cannot unmarshal number 99999999999999999999 into Go value of type int64",
      ],
      [
        "etcdserverpb.RangeRequest",
        { max_mod_revision: "1e3" },
        "json: cannot unmarshal number 1e3 into Go value of type int64",
      ],
      [
        "etcdserverpb.RangeRequest",
        { key: new JsonNumber("123") },
        "json: cannot unmarshal number into Go value of type []uint8",
      ],
      [
        "etcdserverpb.RangeRequest",
        { key: true },
        "json: cannot unmarshal bool into Go value of type []uint8",
      ],
      ["etcdserverpb.RangeRequest", { key: "!!!" }, "illegal base64 data at input byte 0"],
      [
        "etcdserverpb.RangeRequest",
        { sort_order: "SIDEWAYS" },
        'unknown value "SIDEWAYS" for enum etcdserverpb.RangeRequest_SortOrder',
      ],
      [
        "etcdserverpb.RangeRequest",
        { sort_order: true },
        "json: cannot unmarshal bool into Go value of type etcdserverpb.RangeRequest_SortOrder",
      ],
      [
        "etcdserverpb.RangeRequest",
        { sort_order: new JsonNumber("4294967296") },
        "json: cannot unmarshal number 4294967296 into Go value of type etcdserverpb.RangeRequest_SortOrder",
      ],
      [
        "etcdserverpb.RangeRequest",
        [],
        "json: cannot unmarshal array into Go value of type map[string]json.RawMessage",
      ],
      [
        "etcdserverpb.RangeRequest",
        "x",
        "json: cannot unmarshal string into Go value of type map[string]json.RawMessage",
      ],
      [
        "etcdserverpb.TxnRequest",
        { compare: { key: "Zm9v" } },
        "json: cannot unmarshal object into Go value of type []json.RawMessage",
      ],
      [
        "etcdserverpb.TxnRequest",
        { success: [{ request_put: new JsonNumber("5") }] },
        "json: cannot unmarshal number into Go value of type map[string]json.RawMessage",
      ],
      [
        "etcdserverpb.MemberAddRequest",
        { peerURLs: "http://x" },
        "json: cannot unmarshal string into Go value of type []json.RawMessage",
      ],
      [
        "etcdserverpb.MemberRemoveRequest",
        { ID: "-1" },
        "json: cannot unmarshal number -1 into Go value of type uint64",
      ],
      [
        "etcdserverpb.HashKVResponse",
        { hash: 2 ** 32 },
        "json: cannot unmarshal number 4294967296 into Go value of type uint32",
      ],
      [
        "etcdserverpb.AuthenticateRequest",
        { name: new JsonNumber("5") },
        "json: cannot unmarshal number into Go value of type string",
      ],
      // jsonpb keeps a random one of two oneof members (its map's order): refused here instead.
      ["etcdserverpb.RequestOp", { request_put: {}, request_range: {} }, /oneof request already set/],
    ];
    for (const [type, json, message] of bad) {
      assert.throws(
        () => fromEtcdJson(type, json),
        (err: unknown) =>
          err instanceof JsonFormatError &&
          (typeof message === "string" ? err.message === message : message.test(err.message)),
        `${type} ${JSON.stringify(json)}`,
      );
    }
  });

  it("refuses the first bad field in declaration order, as jsonpb meets them", () => {
    // RangeRequest declares key (1) before limit (3): the JSON's order does not matter.
    assert.throws(() => fromEtcdJson("etcdserverpb.RangeRequest", { limit: "x", key: 5 }), {
      message: "json: cannot unmarshal number into Go value of type []uint8",
    });
  });

  it("agrees with the generated codecs on every field of every message", () => {
    // A JSON value for every field, converted to the ts-proto object, through the binary
    // codec and back: a table entry naming the wrong property, kind or type loses it.
    const sample = (typeName: string, depth: number): Record<string, unknown> => {
      const out: Record<string, unknown> = {};
      const oneofs = new Set<string>();
      for (const field of JSON_MESSAGES[typeName]!) {
        if (field.oneof !== undefined) {
          if (oneofs.has(field.oneof)) continue;
          oneofs.add(field.oneof);
        }
        if (field.kind === "message" && depth > 2) continue;
        const one = sampleValue(field, depth);
        out[field.name] = field.repeated ? [one, one] : one;
      }
      return out;
    };
    const sampleValue = (field: JsonField, depth: number): unknown => {
      switch (field.kind) {
        case "message":
          return sample(field.type!, depth + 1);
        case "enum": {
          const names = Object.keys(JSON_ENUMS[field.type!]!);
          return names[names.length - 1];
        }
        case "bool":
          return true;
        case "string":
          return `s-${field.name}`;
        case "bytes":
          return Buffer.from(`b-${field.name}`).toString("base64");
        case "double":
        case "float":
          return 1.5;
        case "int64":
        case "sint64":
        case "sfixed64":
          return "-9007199254740991";
        case "uint64":
        case "fixed64":
          return "9007199254740991";
        case "uint32":
        case "fixed32":
          return 3_000_000_000; // above int32: a table saying int32 would refuse it
        default:
          return -4_000_000;
      }
    };
    let checked = 0;
    for (const typeName of Object.keys(JSON_MESSAGES)) {
      const json = sample(typeName, 0);
      const codec = codecOf(typeName);
      const wire = codec.encode(fromEtcdJson(typeName, json)).finish();
      assert.deepEqual(toEtcdJson(typeName, codec.decode(wire) as object), json, typeName);
      checked++;
    }
    assert.ok(checked > 100, `only ${checked} messages checked`);
  });
});

describe("HTTP route table", () => {
  // The /v3 paths of etcd 3.4's gateway, from its rpc.proto, v3election.proto, v3lock.proto.
  const ETCD_34_PATHS = [
    "/v3/kv/range",
    "/v3/kv/put",
    "/v3/kv/deleterange",
    "/v3/kv/txn",
    "/v3/kv/compaction",
    "/v3/watch",
    "/v3/lease/grant",
    "/v3/lease/revoke",
    "/v3/kv/lease/revoke",
    "/v3/lease/keepalive",
    "/v3/lease/timetolive",
    "/v3/kv/lease/timetolive",
    "/v3/lease/leases",
    "/v3/kv/lease/leases",
    "/v3/cluster/member/add",
    "/v3/cluster/member/remove",
    "/v3/cluster/member/update",
    "/v3/cluster/member/list",
    "/v3/cluster/member/promote",
    "/v3/maintenance/alarm",
    "/v3/maintenance/status",
    "/v3/maintenance/defragment",
    "/v3/maintenance/hash",
    "/v3/maintenance/hashkv",
    "/v3/maintenance/snapshot",
    "/v3/maintenance/transfer-leadership",
    "/v3/auth/enable",
    "/v3/auth/disable",
    "/v3/auth/authenticate",
    "/v3/auth/user/add",
    "/v3/auth/user/get",
    "/v3/auth/user/list",
    "/v3/auth/user/delete",
    "/v3/auth/user/changepw",
    "/v3/auth/user/grant",
    "/v3/auth/user/revoke",
    "/v3/auth/role/add",
    "/v3/auth/role/get",
    "/v3/auth/role/list",
    "/v3/auth/role/delete",
    "/v3/auth/role/grant",
    "/v3/auth/role/revoke",
    "/v3/election/campaign",
    "/v3/election/proclaim",
    "/v3/election/leader",
    "/v3/election/observe",
    "/v3/election/resign",
    "/v3/lock/lock",
    "/v3/lock/unlock",
  ];
  // Added after 3.4 (AuthStatus and Downgrade in 3.5).
  const LATER_PATHS = ["/v3/auth/status", "/v3/maintenance/downgrade"];

  it("has every etcd path, once, and each also under /v3beta", () => {
    const paths = HTTP_ROUTES.map((r) => r.path);
    assert.equal(new Set(paths).size, paths.length);
    const primary = HTTP_ROUTES.filter((r) => r.alias === undefined).map((r) => r.path);
    assert.deepEqual([...primary].sort(), [...ETCD_34_PATHS, ...LATER_PATHS].sort());
    for (const p of primary) assert.ok(paths.includes(p.replace(/^\/v3\//, "/v3beta/")), p);
    assert.equal(HTTP_ROUTES.length, primary.length * 2);
  });

  it("points each path at the right RPC, method definition and message types", () => {
    const range = HTTP_ROUTES.find((r) => r.path === "/v3/kv/range")!;
    assert.equal(range.rpc, "etcdserverpb.KV.Range");
    assert.equal(range.method, etcdserverpb.KVService.range);
    const revoke = HTTP_ROUTES.find((r) => r.path === "/v3beta/kv/lease/revoke")!;
    assert.equal(revoke.method.path, "/etcdserverpb.Lease/LeaseRevoke");
    assert.equal(revoke.alias, "v3beta");
    const hashkv = HTTP_ROUTES.find((r) => r.path === "/v3/maintenance/hashkv")!;
    assert.equal(hashkv.methodKey, "hashKv");
    const keepalive = HTTP_ROUTES.find((r) => r.path === "/v3/lease/keepalive")!;
    assert.ok(keepalive.method.requestStream && keepalive.method.responseStream);
    for (const route of HTTP_ROUTES) {
      const [pkg, service, method] = route.rpc.split(".");
      assert.equal(route.method.path, `/${pkg}.${service}/${method}`);
      assert.ok(JSON_MESSAGES[route.requestType], route.requestType);
      assert.ok(JSON_MESSAGES[route.responseType], route.responseType);
    }
  });
});
