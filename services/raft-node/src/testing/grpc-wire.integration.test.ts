// Requests that are not what an etcd client sends, over raw HTTP/2, compared with a real etcd 3.4:
// bytes its gogo Unmarshal refuses (a known field with another wire type, tag 0, an end group, an
// overlong varint, a length past the end, in nested messages too), framing grpc-go refuses (no
// message, a cut one, compression flags, an encoding it has no decompressor for, an unknown
// service or method, a malformed path), each answered with the same gRPC status and message, and
// none of them changing anything: the last exchange reads every key, byte for byte the same.
import assert from "node:assert/strict";
import http2 from "node:http2";
import { before, describe, test } from "node:test";
import { haveRealEtcd, sideBySideMember } from "./side-by-side.fixture.js";

interface Exchange {
  request: string;
  status: string | undefined;
  message: string | undefined;
  /** The answer's messages, base64 (only for the reads that must match byte for byte). */
  body: string;
}

const B = (...bytes: number[]) => Buffer.from(bytes);
const K = [0x0a, 1, 0x6b]; // key = "k"
const frame = (body: Buffer, flag = 0) => {
  const prefix = Buffer.alloc(5);
  prefix[0] = flag;
  prefix.writeUInt32BE(body.length, 1);
  return Buffer.concat([prefix, body]);
};

interface Case {
  name: string;
  path: string;
  body: Buffer;
  headers?: Record<string, string>;
  /** Keep the answer's bytes in the exchange (reads whose answers must be the same). */
  keepBody?: boolean;
  /** A bidi call: half-close after a pause, as a client that keeps its stream open would. */
  stream?: boolean;
}

const range = frame(B(...K));
const CASES: Case[] = [
  { name: "put k", path: "/etcdserverpb.KV/Put", body: frame(B(...K, 0x12, 1, 0x76)) },
  // gogo's Unmarshal refusals, unary: INTERNAL "grpc: error unmarshalling request: ...".
  { name: "range_end as a varint", path: "/etcdserverpb.KV/Range", body: frame(B(...K, 0x10, 1)) },
  { name: "serializable length-delimited", path: "/etcdserverpb.KV/Range", body: frame(B(...K, 0x3a, 1, 1)) },
  { name: "tag 0", path: "/etcdserverpb.KV/Range", body: frame(B(0x00, 1)) },
  { name: "end group", path: "/etcdserverpb.KV/Range", body: frame(B(0x0c)) },
  { name: "wire type 7", path: "/etcdserverpb.KV/Range", body: frame(B(...K, 0xff, 0x07)) },
  { name: "unclosed group", path: "/etcdserverpb.KV/Range", body: frame(B(...K, 0xfb, 0x07, 0x08, 1)) },
  {
    name: "11-byte varint",
    path: "/etcdserverpb.KV/Range",
    body: frame(B(...K, 0x18, ...Array(10).fill(0xff), 1)),
  },
  {
    name: "negative length",
    path: "/etcdserverpb.KV/Range",
    body: frame(B(0x0a, ...Array(9).fill(0xff), 1)),
  },
  {
    name: "wrapping tag",
    path: "/etcdserverpb.KV/Range",
    body: frame(B(...K, 0xf8, 0xff, 0xff, 0xff, 0xff, 0x01, 0)),
  },
  {
    name: "unknown group and field",
    path: "/etcdserverpb.KV/Range",
    body: frame(B(...K, 0xfb, 0x07, 0x08, 1, 0xfc, 0x07, 0xfa, 0x07, 1, 0)),
    keepBody: true,
  },
  { name: "put value as a varint", path: "/etcdserverpb.KV/Put", body: frame(B(...K, 0x10, 1)) },
  {
    name: "txn put key as a varint",
    path: "/etcdserverpb.KV/Txn",
    body: frame(B(0x12, 4, 0x12, 2, 0x08, 1)),
  },
  { name: "txn oneof as a varint", path: "/etcdserverpb.KV/Txn", body: frame(B(0x12, 2, 0x08, 1)) },
  {
    name: "compare version length-delimited",
    path: "/etcdserverpb.KV/Txn",
    body: frame(B(0x0a, 2, 0x22, 0)),
  },
  { name: "nested range cut", path: "/etcdserverpb.KV/Txn", body: frame(B(0x12, 4, 0x0a, 5, 0x0a, 1)) },
  {
    name: "delete prev_kv length-delimited",
    path: "/etcdserverpb.KV/DeleteRange",
    body: frame(B(...K, 0x1a, 0)),
  },
  {
    name: "lease ID length-delimited",
    path: "/etcdserverpb.Lease/LeaseGrant",
    body: frame(B(0x08, 0x0a, 0x12, 0)),
  },
  { name: "member peer URLs as a varint", path: "/etcdserverpb.Cluster/MemberAdd", body: frame(B(0x08, 0)) },
  { name: "user name as a varint", path: "/etcdserverpb.Auth/UserAdd", body: frame(B(0x08, 0)) },
  { name: "alarm action length-delimited", path: "/etcdserverpb.Maintenance/Alarm", body: frame(B(0x0a, 0)) },
  { name: "lock name as a varint", path: "/v3lockpb.Lock/Lock", body: frame(B(0x08, 0)) },
  { name: "campaign name as a varint", path: "/v3electionpb.Election/Campaign", body: frame(B(0x08, 0)) },
  // Server streams and bidi streams: "grpc: failed to unmarshal the received message ...".
  { name: "snapshot request cut", path: "/etcdserverpb.Maintenance/Snapshot", body: frame(B(0xff)) },
  {
    name: "watch key as a varint",
    path: "/etcdserverpb.Watch/Watch",
    body: frame(B(0x0a, 2, 0x08, 0)),
    stream: true,
  },
  {
    name: "watch filters as fixed32",
    path: "/etcdserverpb.Watch/Watch",
    body: frame(B(0x0a, 5, ...K, 0x2d, 0)),
    stream: true,
  },
  { name: "keep-alive cut", path: "/etcdserverpb.Lease/LeaseKeepAlive", body: frame(B(0x08)), stream: true },
  // grpc-go's framing and routing.
  { name: "no message", path: "/etcdserverpb.KV/Range", body: B() },
  { name: "a cut message", path: "/etcdserverpb.KV/Range", body: range.subarray(0, 6) },
  {
    name: "two messages",
    path: "/etcdserverpb.KV/Range",
    body: Buffer.concat([range, range]),
    keepBody: true,
  },
  { name: "compressed flag", path: "/etcdserverpb.KV/Range", body: frame(B(...K), 1) },
  { name: "flag 2", path: "/etcdserverpb.KV/Range", body: frame(B(...K), 2) },
  { name: "gzip", path: "/etcdserverpb.KV/Range", body: range, headers: { "grpc-encoding": "gzip" } },
  { name: "too large", path: "/etcdserverpb.KV/Put", body: Buffer.concat([B(0, 0x00, 0x20, 0x00, 0x01)]) },
  { name: "unknown method", path: "/etcdserverpb.KV/Foo", body: range },
  { name: "unknown service", path: "/etcdserverpb.Foo/Put", body: range },
  { name: "malformed path", path: "/x", body: range },
  // Nothing above changed anything: every key, as each server has it.
  {
    name: "all keys",
    path: "/etcdserverpb.KV/Range",
    body: frame(B(0x0a, 1, 0, 0x12, 1, 0)),
    keepBody: true,
  },
];

function exchange(session: http2.ClientHttp2Session, c: Case): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const request = session.request({
      ":method": "POST",
      ":path": c.path,
      "content-type": "application/grpc",
      te: "trailers",
      ...c.headers,
    });
    const chunks: Buffer[] = [];
    let status: string | undefined;
    let message: string | undefined;
    const read = (h: http2.IncomingHttpHeaders) => {
      status = (h["grpc-status"] as string | undefined) ?? status;
      message = (h["grpc-message"] as string | undefined) ?? message;
    };
    request.on("response", read);
    request.on("trailers", read);
    request.on("data", (d: Buffer) => chunks.push(d));
    request.on("error", reject);
    request.on("close", () =>
      resolve({
        request: c.name,
        status,
        // etcd sends an empty grpc-message with OK; an absent one is the same to a client.
        message: message === "" ? undefined : message,
        body: c.keepBody ? Buffer.concat(chunks).toString("base64") : "",
      }),
    );
    request.write(c.body);
    if (c.stream) setTimeout(() => request.end(), 200);
    else request.end();
  });
}

async function session(endpoint: string): Promise<Exchange[]> {
  const log: Exchange[] = [];
  const h2 = http2.connect(endpoint);
  try {
    for (const c of CASES) log.push(await exchange(h2, c));
  } finally {
    h2.close();
  }
  return log;
}

describe("requests etcd's client libraries never send, as etcd 3.4 answers them", {
  timeout: 120_000,
  skip: haveRealEtcd ? false : "etcd 3.4 not installed",
}, () => {
  let etcd: Exchange[];
  let ours: Exchange[];

  before(async () => {
    ({ etcd, ours } = await sideBySideMember("wire-1", session));
  });

  test("every exchange: the same status, message and (for reads) answer", () => {
    assert.equal(ours.length, etcd.length);
    for (let i = 0; i < etcd.length; i++) assert.deepEqual(ours[i], etcd[i]);
    // The session refused what it should: the check above is not comparing two successes.
    assert.ok(etcd.filter((e) => e.status === "13").length >= 20);
  });
});
