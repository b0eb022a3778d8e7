import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { freePort } from "@etcd-ts/testing";
import grpc from "@grpc/grpc-js";
import { judgeFailure } from "../routing/failure-policy.js";
import { bindLoopback } from "../testing/grpc-js-member.js";
import {
  MemberChannel,
  PARTS_MIN_BYTES,
  type ResponseRelay,
  unframe,
  unframeParts,
} from "./member-channel.js";
import { passThrough } from "./upstream-client.js";

const RANGE = "/etcdserverpb.KV/Range";
const PATTERN = Buffer.alloc(3 * 1024 * 1024 + 17);
for (let i = 0; i < PATTERN.length; i++) PATTERN[i] = i % 251;

/** A client's side of a relayed message that fills up every third write and drains later. */
function slowWriter() {
  const got: Buffer[] = [];
  const started: number[] = [];
  let writes = 0;
  let pauses = 0;
  const relay = (minBytes: number): ResponseRelay => ({
    minBytes,
    start: (length) => {
      started.push(length);
      return {
        write: (chunk) => {
          got.push(Buffer.from(chunk));
          return ++writes % 3 !== 0;
        },
        onDrain: (resume) => {
          pauses++;
          setTimeout(resume, 2);
        },
      };
    },
  });
  return { relay, got, started, pauses: () => pauses };
}

describe("MemberChannel against a grpc-js server", () => {
  let server: grpc.Server;
  let address: string;
  let channel: MemberChannel;

  before(async () => {
    server = new grpc.Server();
    const unary = (
      name: string,
      handler: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => void,
    ) => server.register(name, handler, passThrough, passThrough, "unary");
    unary("/t.S/Echo", (call, cb) => {
      const trailer = new grpc.Metadata();
      trailer.set("x-seen-token", String(call.metadata.get("token")[0] ?? ""));
      cb(null, Buffer.concat([Buffer.from("echo:"), call.request]), trailer);
    });
    unary("/t.S/Fail", (_call, cb) => {
      const md = new grpc.Metadata();
      md.set("x-why", "because");
      cb({ code: grpc.status.FAILED_PRECONDITION, details: "etcdserver: not leader 100%", metadata: md });
    });
    unary("/t.S/Slow", (_call, cb) => {
      setTimeout(() => cb(null, Buffer.from("late")), 500);
    });
    unary("/t.S/Big", (_call, cb) => cb(null, Buffer.alloc(3 * 1024 * 1024, 7)));
    unary("/t.S/Pattern", (_call, cb) => cb(null, PATTERN));
    // Which connection each call came on (the client's address and port).
    unary("/t.S/Peer", (call, cb) => cb(null, Buffer.from(call.getPeer())));
    // An empty request: which connection it came on; any other: the pattern (a large answer).
    unary("/etcdserverpb.KV/Range", (call, cb) =>
      cb(null, call.request.length === 0 ? Buffer.from(call.getPeer()) : PATTERN),
    );
    address = await bindLoopback(server);
    channel = new MemberChannel(address);
  });

  after(() => {
    channel.close();
    server.forceShutdown();
  });

  it("sends the bytes and metadata, and returns the answer and its trailers", async () => {
    const md = new grpc.Metadata();
    md.set("token", "abc");
    const res = await channel.call("/t.S/Echo", Buffer.from("hi"), md, undefined).result;
    assert.equal(res.error, undefined);
    assert.equal(res.response?.toString(), "echo:hi");
    assert.equal(res.trailers?.get("x-seen-token")[0], "abc");
  });

  it("relays status, percent-decoded details and trailers of an error", async () => {
    const res = await channel.call("/t.S/Fail", Buffer.alloc(0), new grpc.Metadata(), undefined).result;
    assert.equal(res.error?.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(res.error?.details, "etcdserver: not leader 100%");
    assert.equal(res.error?.metadata.get("x-why")[0], "because");
  });

  it("reports unknown methods as the server does", async () => {
    const res = await channel.call("/t.S/Nope", Buffer.alloc(0), new grpc.Metadata(), undefined).result;
    assert.equal(res.error?.code, grpc.status.UNIMPLEMENTED);
  });

  it("enforces deadlines and cancellation", async () => {
    const late = await channel.call("/t.S/Slow", Buffer.alloc(0), new grpc.Metadata(), Date.now() + 50)
      .result;
    assert.equal(late.error?.code, grpc.status.DEADLINE_EXCEEDED);
    const call = channel.call("/t.S/Slow", Buffer.alloc(0), new grpc.Metadata(), undefined);
    call.cancel();
    assert.equal((await call.result).error?.code, grpc.status.CANCELLED);
  });

  it("sends Ranges on a connection of their own, the other calls on one", async () => {
    const peer = async (path: string) => {
      const res = await channel.call(path, Buffer.alloc(0), new grpc.Metadata(), undefined).result;
      assert.equal(res.error, undefined);
      return res.response!.toString();
    };
    const before = await peer("/t.S/Peer");
    const range = await peer("/etcdserverpb.KV/Range");
    assert.equal(await peer("/t.S/Peer"), before);
    assert.equal(await peer("/etcdserverpb.KV/Range"), range);
    // Without it a full list's DATA and the puts' answers came in one byte stream, in turn.
    assert.notEqual(range, before, "a Range shared the other calls' connection");
  });

  it("carries responses larger than the default flow-control windows", async () => {
    const res = await channel.call("/t.S/Big", Buffer.alloc(0), new grpc.Metadata(), undefined).result;
    assert.equal(res.response?.length, 3 * 1024 * 1024);
  });

  it("relays an answer of at least minBytes as it arrives, waiting while the client is full", async () => {
    const w = slowWriter();
    const res = await channel.call(
      "/t.S/Pattern",
      Buffer.alloc(0),
      new grpc.Metadata(),
      undefined,
      w.relay(1 << 20),
    ).result;
    assert.equal(res.error, undefined);
    assert.equal(res.relayed, true);
    assert.equal(res.response, undefined);
    assert.deepEqual(w.started, [PATTERN.length]);
    assert.ok(w.pauses() > 0, "the writer's back-pressure paused the member's stream");
    assert.ok(Buffer.concat(w.got).equals(PATTERN));
  });

  it("relays a Range's DATA from a few reused read buffers, each intact until written", async () => {
    // The client's side keeps each chunk (no copy) until it says it was written, a few turns later.
    const buffers = new Set<ArrayBufferLike>();
    let at = 0;
    let intact = true;
    const relay: ResponseRelay = {
      minBytes: 1 << 20,
      start: () => ({
        write: (chunk, sent) => {
          buffers.add(chunk.buffer);
          const mine = { chunk, at };
          at += chunk.length;
          setTimeout(() => {
            // Written: the bytes must still be the ones that came.
            if (!Buffer.from(mine.chunk).equals(PATTERN.subarray(mine.at, mine.at + mine.chunk.length)))
              intact = false;
            sent?.();
          }, 1);
          return true;
        },
        onDrain: (resume) => resume(),
      }),
    };
    for (let round = 0; round < 3; round++) {
      at = 0;
      const res = await channel.call(RANGE, Buffer.from("all"), new grpc.Metadata(), undefined, relay).result;
      assert.equal(res.error, undefined);
      assert.equal(res.relayed, true);
      await new Promise((r) => setTimeout(r, 20));
      assert.ok(intact, "a relayed chunk's bytes changed before it was written");
      // Every byte came, in order (each chunk was checked as it was written).
      assert.equal(at, PATTERN.length);
    }
    // 3 rounds of 3 MiB came in 64 KiB reads: ~150 buffers when each read took a new one.
    assert.ok(buffers.size <= 40, `the relayed chunks were in ${buffers.size} buffers`);
  });

  it("keeps an answer below minBytes, and never starts the client's message", async () => {
    const w = slowWriter();
    const res = await channel.call(
      "/t.S/Pattern",
      Buffer.alloc(0),
      new grpc.Metadata(),
      undefined,
      w.relay(4 << 20),
    ).result;
    assert.equal(res.relayed, undefined);
    assert.ok(res.response?.equals(PATTERN));
    assert.deepEqual(w.started, []);
  });

  it("does not relay an error", async () => {
    const w = slowWriter();
    const res = await channel.call("/t.S/Fail", Buffer.alloc(0), new grpc.Metadata(), undefined, w.relay(0))
      .result;
    assert.equal(res.error?.code, grpc.status.FAILED_PRECONDITION);
    assert.equal(res.relayed, undefined);
    assert.deepEqual(w.started, []);
  });

  it("says a call was never sent when nothing listens, so even writes may be retried", async () => {
    const dead = new MemberChannel(`127.0.0.1:${await freePort()}`);
    try {
      const res = await dead.call("/t.S/Echo", Buffer.from("x"), new grpc.Metadata(), Date.now() + 2000)
        .result;
      assert.equal(res.error?.code, grpc.status.UNAVAILABLE);
      assert.match(res.error!.details, /^No connection established/);
      assert.equal(judgeFailure(res.error!.code, res.error!.details).retry, "any");
    } finally {
      dead.close();
    }
  });
});

describe("gRPC framing helpers", () => {
  it("unframes exactly one uncompressed message", () => {
    const msg = Buffer.from("abc");
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 3]), msg]);
    assert.deepEqual(unframe([frame.subarray(0, 2), frame.subarray(2)]), msg);
    assert.equal(unframe([Buffer.from([1, 0, 0, 0, 0])]), undefined, "compressed is refused");
    assert.equal(unframe([frame.subarray(0, 6)]), undefined, "truncated is refused");
  });

  it("keeps a large message in the pieces it arrived in, whatever the cuts", () => {
    const msg = Buffer.alloc(PARTS_MIN_BYTES + 12_345);
    for (let i = 0; i < msg.length; i++) msg[i] = i % 251;
    const prefix = Buffer.from([0, 0, 0, 0, 0]);
    prefix.writeUInt32BE(msg.length, 1);
    const frame = Buffer.concat([prefix, msg]);
    for (const cuts of [[5], [2, 3, 70_000], [1, 2, 3, 4, 5, 6], [16_384, 32_768, frame.length - 1]]) {
      const chunks: Buffer[] = [];
      let at = 0;
      for (const cut of cuts) {
        chunks.push(frame.subarray(at, cut));
        at = cut;
      }
      chunks.push(frame.subarray(at));
      const parts = unframeParts(chunks);
      assert.ok(parts !== undefined, `cuts ${cuts}`);
      assert.equal(parts.length, msg.length);
      assert.deepEqual(Buffer.concat(parts.parts), msg, `cuts ${cuts}`);
    }
    assert.equal(unframeParts([frame.subarray(0, 100), frame.subarray(100, -1)]), undefined, "truncated");
    const compressed = Buffer.from(frame);
    compressed[0] = 1;
    assert.equal(
      unframeParts([compressed.subarray(0, 10), compressed.subarray(10)]),
      undefined,
      "compressed",
    );
    const small = Buffer.concat([Buffer.from([0, 0, 0, 0, 3]), Buffer.from("abc")]);
    assert.equal(unframeParts([small.subarray(0, 2), small.subarray(2)]), undefined, "small: unframe's");
  });
});

describe("a relayed answer whose member goes away mid-way", () => {
  it("fails as a dropped connection, marked relayed (not to be retried)", async () => {
    // A real HTTP/2 server that sends half of a large message, then drops the connection.
    const server = http2.createServer();
    server.on("stream", (stream) => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" });
      const prefix = Buffer.from([0, 0, 0, 0, 0]);
      prefix.writeUInt32BE(PATTERN.length, 1);
      stream.write(Buffer.concat([prefix, PATTERN.subarray(0, 1 << 20)]), () =>
        setTimeout(() => stream.session?.destroy(), 20),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    const half = new MemberChannel(`127.0.0.1:${port}`);
    try {
      const w = slowWriter();
      const res = await half.call(
        "/t.S/Any",
        Buffer.alloc(0),
        new grpc.Metadata(),
        undefined,
        w.relay(1 << 20),
      ).result;
      assert.equal(res.relayed, true);
      assert.equal(res.error?.code, grpc.status.UNAVAILABLE);
      assert.equal(res.error?.details, "Connection dropped");
      assert.deepEqual(w.started, [PATTERN.length]);
      // What arrived before the drop went on in order (a socket destroyed may lose its tail).
      const got = Buffer.concat(w.got);
      assert.ok(got.length > 0 && got.length <= 1 << 20, `relayed ${got.length} bytes`);
      assert.ok(got.equals(PATTERN.subarray(0, got.length)));
    } finally {
      half.close();
      server.close();
    }
  });
});

describe("a stream the member refuses (REFUSED_STREAM)", () => {
  it("is sent once more, since the member did not process it", async () => {
    const server = http2.createServer();
    let streams = 0;
    server.on("stream", (stream) => {
      stream.on("error", () => {});
      if (++streams === 1) {
        stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
        return;
      }
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(Buffer.from([0, 0, 0, 0, 2, 0x6f, 0x6b]));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const channel = new MemberChannel(`127.0.0.1:${(server.address() as { port: number }).port}`);
    try {
      const res = await channel.call("/t.S/Any", Buffer.from("x"), new grpc.Metadata(), Date.now() + 2000)
        .result;
      assert.equal(res.error, undefined);
      assert.equal(res.response?.toString(), "ok");
      assert.equal(streams, 2);
    } finally {
      channel.close();
      server.close();
    }
  });
});
