// The first request's sender, read from what real clients put on the wire: grpc-js (HTTP/2
// with Huffman-coded HPACK headers; a member's bootstrap ClusterInfo call still uses it, while
// its Raft stream goes out on our own HTTP/2 client with literal headers, which the chaos
// suite's proxy reads the same way) and an HTTP/1.1 client sending etcd 3.4's rafthttp header. Each client dials a listener that answers nothing, as the proxy
// does before it knows the sender.

import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { describe, test } from "node:test";
import { peer } from "@etcd-ts/api";
import { credentials, Metadata } from "@grpc/grpc-js";
import { MAX_FIRST_REQUEST_BYTES, peerSender } from "./peer-sender.js";

const EMPTY_SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);

/** Everything the client `dial(port)` sends until its first request's sender is decided (bounded: 5 s). */
async function firstBytes(dial: (port: number) => () => void): Promise<Buffer> {
  let received = Buffer.alloc(0);
  let done!: () => void;
  const decided = new Promise<void>((ok) => {
    done = ok;
  });
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on("data", (d: Buffer) => {
      // An HTTP/2 client (grpc-js) sends its first call only after the server's SETTINGS.
      if (received.length === 0 && d.subarray(0, 3).toString() === "PRI") s.write(EMPTY_SETTINGS);
      received = Buffer.concat([received, d]);
      if (peerSender(received).kind !== "more") done();
    });
    s.on("error", () => {});
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", () => ok()));
  const close = dial((server.address() as net.AddressInfo).port);
  const timer = setTimeout(done, 5_000);
  await decided;
  clearTimeout(timer);
  close();
  for (const s of sockets) s.destroy();
  await new Promise<void>((ok) => server.close(() => ok()));
  return received;
}

function grpcCall(withSender: boolean) {
  return (port: number) => {
    const client = new peer.RaftPeerClient(`127.0.0.1:${port}`, credentials.createInsecure());
    const headers = new Metadata();
    if (withSender) {
      headers.set("x-server-from", "8e9e05c52164694d");
      headers.set("x-etcd-cluster-id", "cdf818194e3a8c32");
    }
    client.clusterInfo({}, headers, { deadline: Date.now() + 5_000 }, () => {});
    return () => client.close();
  };
}

function http1Post(headers: Record<string, string>) {
  return (port: number) => {
    const req = http.request({ host: "127.0.0.1", port, method: "POST", path: "/raft", headers });
    req.on("error", () => {});
    req.end("raft message bytes");
    return () => req.destroy();
  };
}

describe("peerSender", () => {
  test("names the member a grpc-js peer call sends as x-server-from (HPACK, Huffman-coded)", async () => {
    const bytes = await firstBytes(grpcCall(true));
    assert.deepEqual(peerSender(bytes), { kind: "named", id: "8e9e05c52164694d" });
    // Cut anywhere before the header block ends, the bytes are not enough yet (never a wrong answer).
    let decidedAt = 0;
    while (peerSender(bytes.subarray(0, decidedAt)).kind === "more") decidedAt++;
    assert.ok(decidedAt > 24 + 9, `decided after ${decidedAt} bytes: past the preface and a frame header`);
    assert.equal(peerSender(bytes.subarray(0, decidedAt)).kind, "named");
  });

  test("a grpc-js call without the header (a joining member's ClusterInfo) is anonymous", async () => {
    const sender = peerSender(await firstBytes(grpcCall(false)));
    assert.equal(sender.kind, "anonymous");
    assert.match(sender.kind === "anonymous" ? sender.why : "", /ClusterInfo names no sender/);
  });

  test("names the member in etcd 3.4's HTTP/1.1 X-Server-From, whatever its case", async () => {
    const bytes = await firstBytes(http1Post({ "X-Server-From": "A1B2", "X-Etcd-Cluster-ID": "1" }));
    assert.deepEqual(peerSender(bytes), { kind: "named", id: "a1b2" });
    assert.deepEqual(peerSender(bytes.subarray(0, bytes.indexOf("\r\n\r\n"))), { kind: "more" });
  });

  test("an HTTP/1.1 request without it (etcd's probes and version checks) is anonymous", async () => {
    const sender = peerSender(await firstBytes(http1Post({ Host: "x" })));
    assert.equal(sender.kind, "anonymous");
  });

  test("a value that is no member ID is anonymous, not a guess", () => {
    const req = Buffer.from("GET /version HTTP/1.1\r\nX-Server-From: not-an-id\r\n\r\n");
    assert.equal(peerSender(req).kind, "anonymous");
  });

  test("TLS and other protocols cannot name a sender; a head that never ends is given up", () => {
    assert.deepEqual(peerSender(Buffer.from([0x16, 0x03, 0x01])), {
      kind: "anonymous",
      why: "TLS (encrypted headers)",
    });
    assert.deepEqual(peerSender(Buffer.alloc(0)), { kind: "more" });
    const endless = Buffer.from(`GET / HTTP/1.1\r\nX: ${"y".repeat(MAX_FIRST_REQUEST_BYTES)}`);
    assert.equal(peerSender(endless).kind, "anonymous");
  });
});
