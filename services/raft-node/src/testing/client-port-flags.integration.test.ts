// etcd's client-port flags on the wire: --host-whitelist and --cors (compared with a real etcd
// 3.4 started with the same flags), --grpc-keepalive-* (server pings, unanswered pings close the
// connection, too many client pings get GOAWAY ENHANCE_YOUR_CALM "too_many_pings") and
// --metrics basic/extensive (grpc_server_handling_seconds only with extensive).
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { freePort } from "@etcd-ts/testing";
import {
  haveRealEtcd,
  type Running,
  sideBySide,
  singleMemberFlags,
  startOurs,
  stopProcess,
  waitReady,
} from "./side-by-side.fixture.js";

interface Answer {
  status: number;
  headers: Record<string, string | undefined>;
  body: string;
}

/** A plain HTTP/1.1 request with any Host header (fetch would not send a foreign one). */
function request(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path, headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      res.on("end", () => {
        const pick = (name: string) => {
          const v = res.headers[name];
          return Array.isArray(v) ? v.join(", ") : v;
        };
        resolve({
          status: res.statusCode ?? 0,
          headers: {
            "content-type": pick("content-type"),
            "access-control-allow-origin": pick("access-control-allow-origin"),
            "access-control-allow-methods": pick("access-control-allow-methods"),
            "access-control-allow-headers": pick("access-control-allow-headers"),
          },
          body,
        });
      });
    });
    req.on("error", reject);
    req.end(method === "POST" ? "{}" : undefined);
  });
}

const dirs: string[] = [];
async function freshDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "client-port-flags-"));
  dirs.push(dir);
  return dir;
}

after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe("--host-whitelist and --cors answer as etcd 3.4's", {
  skip: !haveRealEtcd && "no /usr/bin/etcd",
}, () => {
  test("a foreign Host gets 421 with etcd's text; origins get CORS headers only when listed; OPTIONS is 200", async () => {
    const clientPort = await freePort();
    const peerPort = await freePort();
    const flags = (dataDir: string) => [
      ...singleMemberFlags(
        "hw",
        dataDir,
        `http://127.0.0.1:${clientPort}`,
        `http://127.0.0.1:${peerPort}`,
        "hw-token",
      ),
      "--host-whitelist",
      "127.0.0.1,localhost",
      "--cors",
      "http://allowed.example:8080",
    ];
    const session = async () => {
      const local = `127.0.0.1:${clientPort}`;
      return [
        await request(clientPort, "GET", "/version", { host: "rebind.example:80" }),
        await request(clientPort, "POST", "/v3/kv/range", { host: "rebind.example" }),
        await request(clientPort, "GET", "/version", { host: local, origin: "http://allowed.example:8080" }),
        await request(clientPort, "GET", "/version", {
          host: `localhost:${clientPort}`,
          origin: "http://other.example:8080",
        }),
        await request(clientPort, "POST", "/v3/kv/range", {
          host: local,
          origin: "http://allowed.example:8080",
        }),
        await request(clientPort, "OPTIONS", "/v3/kv/put", {
          host: local,
          origin: "http://allowed.example:8080",
        }),
        await request(clientPort, "OPTIONS", "/anything", { host: local }),
      ];
    };
    const { etcd, ours } = await sideBySide(
      flags,
      { etcd: await freshDir(), ours: await freshDir() },
      session,
    );
    // Our own checks first (so the test says what it expects), then the comparison.
    assert.equal(ours[0]!.status, 421);
    assert.match(ours[0]!.body, /etcd --host-whitelist "rebind.example"/);
    assert.equal(ours[2]!.headers["access-control-allow-origin"], "http://allowed.example:8080");
    assert.equal(ours[3]!.headers["access-control-allow-origin"], undefined);
    assert.equal(ours[5]!.status, 200);
    // Bodies of JSON answers carry the member and cluster IDs, the same for the same flags
    // but for the revision's raft_term; everything here is compared whole.
    assert.deepEqual(ours, etcd);
  });
});

/** Frames read off a raw HTTP/2 connection: [type, flags] of each. */
function rawHttp2Client(port: number, path: string) {
  const socket = net.connect(port, "127.0.0.1");
  const frames: { type: number; flags: number }[] = [];
  let buffered = Buffer.alloc(0);
  let closed = false;
  socket.on("data", (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 9) {
      const length = buffered.readUIntBE(0, 3);
      if (buffered.length < 9 + length) break;
      frames.push({ type: buffered[3]!, flags: buffered[4]! });
      buffered = buffered.subarray(9 + length);
    }
  });
  socket.on("error", () => {});
  socket.on("close", () => {
    closed = true;
  });
  // HPACK: :method POST (static 3), :scheme http (static 6), :path and :authority as literals
  // with indexed names (static 4 and 1), so one HEADERS frame opens stream 1.
  const authority = `127.0.0.1:${port}`;
  const block = Buffer.concat([
    Buffer.from([0x83, 0x86, 0x04, path.length]),
    Buffer.from(path),
    Buffer.from([0x01, authority.length]),
    Buffer.from(authority),
  ]);
  const headers = Buffer.alloc(9);
  headers.writeUIntBE(block.length, 0, 3);
  headers[3] = 0x1;
  headers[4] = 0x5; // END_STREAM | END_HEADERS
  headers.writeUInt32BE(1, 5);
  socket.write(
    Buffer.concat([
      Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
      Buffer.from([0, 0, 0, 0x4, 0, 0, 0, 0, 0]), // empty SETTINGS
      headers,
      block,
    ]),
  );
  return {
    pingsReceived: () => frames.filter((f) => f.type === 0x6 && (f.flags & 0x1) === 0).length,
    closed: () => closed,
    destroy: () => socket.destroy(),
  };
}

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("--grpc-keepalive-* and --metrics on a member", () => {
  let extensive: Running;
  let basic: Running;
  let port: number;
  let basicPort: number;

  before(async () => {
    port = await freePort();
    basicPort = await freePort();
    const start = async (clientPort: number, name: string, extra: string[]) => {
      const p = startOurs([
        ...singleMemberFlags(
          name,
          await freshDir(),
          `http://127.0.0.1:${clientPort}`,
          `http://127.0.0.1:${await freePort()}`,
          name,
        ),
        ...extra,
      ]);
      await waitReady(p);
      return p;
    };
    extensive = await start(port, "ka", [
      "--grpc-keepalive-interval",
      "300ms",
      "--grpc-keepalive-timeout",
      "500ms",
      "--grpc-keepalive-min-time",
      "2s",
      "--metrics",
      "extensive",
    ]);
    basic = await start(basicPort, "basic", []);
  });

  after(async () => {
    await stopProcess(extensive);
    await stopProcess(basic);
  });

  test("idle connections are pinged at the interval and closed when a ping goes unanswered", async () => {
    // A client that never reads its pings' meaning: it answers none of them.
    const silent = rawHttp2Client(port, "/etcdserverpb.Maintenance/Status");
    try {
      await until("the server pings", () => silent.pingsReceived() > 0, 10_000);
      await until("the connection is closed", () => silent.closed(), 10_000);
    } finally {
      silent.destroy();
    }
    // A client that answers (node:http2 acks pings) keeps its connection across intervals.
    const session = http2.connect(`http://127.0.0.1:${port}`);
    let serverPings = 0;
    session.on("ping", () => serverPings++);
    session.on("error", () => {});
    try {
      const stream = session.request({ ":method": "POST", ":path": "/etcdserverpb.Maintenance/Status" });
      stream.on("error", () => {});
      stream.end();
      await until("three server pings", () => serverPings >= 3, 10_000);
      assert.equal(session.closed || session.destroyed, false);
    } finally {
      session.destroy();
    }
  });

  test("a client pinging more often than --grpc-keepalive-min-time gets GOAWAY ENHANCE_YOUR_CALM too_many_pings", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => {});
    const goaway = new Promise<{ code: number; data: string }>((resolve) =>
      session.once("goaway", (code, _last, data) => resolve({ code, data: data?.toString() ?? "" })),
    );
    try {
      const stream = session.request({ ":method": "POST", ":path": "/etcdserverpb.Maintenance/Status" });
      stream.on("error", () => {});
      stream.resume();
      stream.end();
      await new Promise((r) => stream.once("close", r));
      // Bounded: grpc-go's policy sends GOAWAY on the third strike (the fourth quick ping).
      for (let i = 0; i < 6 && !session.closed && !session.destroyed; i++) {
        await new Promise<void>((resolve) => {
          if (!session.ping(() => resolve())) resolve();
        });
      }
      const got = await Promise.race([
        goaway,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 5_000)),
      ]);
      assert.deepEqual(got, { code: http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, data: "too_many_pings" });
    } finally {
      session.destroy();
    }
  });

  test("grpc_server_handling_seconds is exported with --metrics extensive and not with basic", async () => {
    const scrape = async (clientPort: number) => {
      // A call first, so a Range series has been observed.
      await fetch(`http://127.0.0.1:${clientPort}/v3/kv/range`, { method: "POST", body: '{"key":"YQ=="}' });
      return (await fetch(`http://127.0.0.1:${clientPort}/metrics`)).text();
    };
    const withHistogram = await scrape(port);
    assert.match(
      withHistogram,
      /grpc_server_handling_seconds_bucket\{le="0.005",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"\} \d+/,
    );
    assert.match(
      withHistogram,
      /grpc_server_handling_seconds_count\{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"\} [1-9]/,
    );
    const without = await scrape(basicPort);
    assert.match(
      without,
      /grpc_server_handled_total\{grpc_code="OK",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"\} [1-9]/,
    );
    assert.doesNotMatch(without, /grpc_server_handling_seconds/);
  });
});
