// SocketOutput: one socket write per turn, and bytes pushed "later" (a PING's ACK) riding at the
// end of the next write, or going alone once they waited LATER_MAX_MS. Over a real socket: a
// message far larger than one turn's budget (a full list) goes out in pieces, a turn of the event
// loop apart, so the loop polls for other connections' I/O between them, and arrives whole; a
// writer hears when each chunk it wrote has been written. readInTurns: a socket with much to read
// hands over at most about 256 KiB a turn, whole and in order.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import grpc from "@grpc/grpc-js";
import { encodeLiteralHeaderBlock } from "../http2-frames.js";
import { GrpcHttp2Server, MessageParts } from "../http2-server.js";
import { ClientSocketConnection } from "./client-socket.js";
import {
  joinSmall,
  RECYCLED_READ_BYTES,
  RecycledReads,
  readInTurns,
  SocketOutput,
  socketTaps,
} from "./socket-output.js";

/** A socket stand-in that records each write (Node's Writable; nothing of ours is replaced). */
function recorder() {
  const writes: Buffer[] = [];
  /** The buffers the socket was handed, as they are (not copies). */
  const handed: Buffer[] = [];
  const socket = new Writable({
    write(chunk: Buffer, _encoding, done) {
      handed.push(chunk);
      writes.push(Buffer.from(chunk));
      done();
    },
  });
  let flushes = 0;
  const core = {
    flush: () => {
      flushes++;
      return 0;
    },
    outputHeld: false,
  };
  const output = new SocketOutput(
    socket as never,
    () => core,
    () => false,
  );
  return { writes, handed, output, flushes: () => flushes };
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Bytes counted per turn of the event loop (a turn ends at the check phase) until `stop`. */
function bytesPerTurn() {
  const perTurn: number[] = [0];
  let ticking = true;
  const tick = () => {
    perTurn.push(0);
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  return {
    perTurn,
    count: (bytes: number) => {
      perTurn[perTurn.length - 1]! += bytes;
    },
    stop: () => {
      ticking = false;
    },
  };
}

describe("SocketOutput", () => {
  it("writes one turn's frames in one write", async () => {
    const { writes, output } = recorder();
    output.push(Buffer.from("a"));
    output.push(Buffer.from("b"));
    await turn();
    assert.deepEqual(writes.map(String), ["ab"]);
  });

  it("writes a turn's large frames as they are, not copied, and joins the small ones between them", async () => {
    const { writes, handed, output } = recorder();
    const payloads = [randomBytes(16 * 1024), randomBytes(16 * 1024)];
    output.push(Buffer.from("h1"));
    output.push(payloads[0]!);
    output.push(Buffer.from("h2"));
    output.push(Buffer.from("x"));
    output.push(payloads[1]!);
    await turn();
    assert.ok(handed.includes(payloads[0]!) && handed.includes(payloads[1]!), "a large frame was copied");
    assert.deepEqual(
      writes.map((w) => (w.length > 100 ? w.length : String(w))),
      ["h1", 16 * 1024, "h2x", 16 * 1024],
    );
  });

  it("sends bytes pushed later at the end of the next write, not in a write of their own", async () => {
    const { writes, output } = recorder();
    // Turns run by hand (writeOut), so a slow machine's timer cannot step in between.
    output.pushLater(Buffer.from("ack"));
    output.writeOut();
    assert.deepEqual(writes.map(String), [], "nothing else to write: the ACK waits");
    output.push(Buffer.from("answer"));
    output.writeOut();
    assert.deepEqual(writes.map(String), ["answerack"]);
    await sleep(20);
    assert.deepEqual(writes.map(String), ["answerack"], "sent once");
  });

  it("sends bytes pushed later alone when no other write comes within a few ms", async () => {
    const { writes, output } = recorder();
    output.pushLater(Buffer.from("ack1"));
    output.pushLater(Buffer.from("ack2"));
    await sleep(30);
    assert.deepEqual(writes.map(String), ["ack1ack2"]);
    output.push(Buffer.from("next"));
    await turn();
    assert.deepEqual(writes.map(String), ["ack1ack2", "next"]);
  });
});

const MIB = 1024 * 1024;

/** One call to `path` with an empty request on `c`: the answer's bytes and grpc-status. */
function call(
  c: ClientSocketConnection,
  path: string,
): Promise<{ data: Buffer; status: string | undefined }> {
  return new Promise((done) => {
    const data: Buffer[] = [];
    let status: string | undefined;
    const block = encodeLiteralHeaderBlock(
      [
        [":method", "POST"],
        [":scheme", "http"],
        [":path", path],
        [":authority", "localhost"],
        ["content-type", "application/grpc"],
        ["te", "trailers"],
      ].map(([name, value]) => ({ name: name!, value: value!, neverIndex: false })),
    );
    const stream = c.h2.request(block, {
      headers: (h, end) => {
        if (end) status = h["grpc-status"] as string;
      },
      data: (chunk) => data.push(Buffer.from(chunk)),
      close: () => done({ data: Buffer.concat(data), status }),
      drain: () => {},
    });
    assert.ok(stream !== undefined);
    stream.write(Buffer.from([0, 0, 0, 0, 0]));
    stream.end();
  });
}

const digest = (b: Buffer[]) => b.reduce((h, p) => h.update(p), createHash("sha256")).digest("hex");

describe("SocketOutput over a real socket", () => {
  it("sends a 16 MiB message within the client's window a piece per turn, and whole", async () => {
    const parts = Array.from({ length: 16 }, () => randomBytes(MIB));
    const server = new GrpcHttp2Server({});
    server.register("/t.T/Big", {
      kind: "unary",
      handle: (c) => {
        c.sendMessageParts(new MessageParts(parts));
        c.finish({ code: grpc.status.OK });
      },
    });
    const port = await server.listen("127.0.0.1:0");
    // Bytes the server hands its socket per turn of the loop.
    const { perTurn, count, stop } = bytesPerTurn();
    socketTaps.write = (socket, bytes) => {
      if ((socket as { localPort?: number }).localPort === port) count(bytes);
    };
    // A window larger than the message: flow control alone would let it out in one turn.
    const c = new ClientSocketConnection({ host: "127.0.0.1", port, windowBytes: 64 * MIB });
    try {
      const got = await call(c, "/t.T/Big");
      assert.equal(got.status, "0");
      assert.equal(got.data.length, 5 + 16 * MIB);
      assert.equal(digest([got.data.subarray(5)]), digest(parts));
      const busy = perTurn.filter((b) => b > 0);
      // At most one budget (256 KiB of DATA and its frame headers) per write, two writes a turn
      // (one in the poll phase, one in the check phase).
      assert.ok(Math.max(...busy) <= 2.1 * MIB, `a turn wrote ${Math.max(...busy)} bytes`);
      assert.ok(busy.length >= 8, `the message went out in ${busy.length} turns`);
    } finally {
      stop();
      delete socketTaps.write;
      c.destroy();
      await server.close(100);
    }
  });

  it("tells a message's writer when each of its chunks has been written, in order", async () => {
    const parts = Array.from({ length: 4 }, () => randomBytes(MIB));
    const sent: number[] = [];
    const server = new GrpcHttp2Server({});
    server.register("/t.T/Pieces", {
      kind: "unary",
      handle: async (c) => {
        const writer = c.startMessage(4 * MIB)!;
        for (const [i, p] of parts.entries()) {
          if (!writer.write(p, () => sent.push(i))) await new Promise<void>((r) => writer.onDrain(r));
        }
        c.finish({ code: grpc.status.OK });
      },
    });
    const port = await server.listen("127.0.0.1:0");
    const c = new ClientSocketConnection({ host: "127.0.0.1", port, windowBytes: 64 * MIB });
    try {
      const got = await call(c, "/t.T/Pieces");
      assert.equal(got.status, "0");
      assert.equal(digest([got.data.subarray(5)]), digest(parts));
      for (let i = 0; i < 100 && sent.length < 4; i++) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(sent, [0, 1, 2, 3]);
    } finally {
      c.destroy();
      await server.close(100);
    }
  });
});

describe("readInTurns", () => {
  it("hands over at most about 256 KiB of a socket's bytes per turn, all of them, in order", async () => {
    const sent = randomBytes(16 * MIB);
    const server = net.createServer((s) => s.end(sent));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as net.AddressInfo;
    const socket = net.connect({ port, host: "127.0.0.1" });
    // Bytes handed over per turn of the loop.
    const { perTurn, count, stop } = bytesPerTurn();
    const got: Buffer[] = [];
    try {
      readInTurns(socket, (chunk) => {
        got.push(chunk);
        count(chunk.length);
      });
      await new Promise((r) => socket.once("end", r));
      assert.equal(digest(got), digest([sent]));
      // The budget and at most one read of 64 KiB past it (plain 'data' listeners: 2 MiB, libuv's
      // 32 reads of a readable socket in a row).
      const most = Math.max(...perTurn);
      assert.ok(most <= 320 * 1024, `a turn handed over ${most} bytes`);
    } finally {
      stop();
      socket.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});

describe("RecycledReads", () => {
  it("reads 16 MiB of frames into a few reused buffers: every byte in order, a held part intact until released", async () => {
    // Frames of a 3-byte length and 1..16,384 bytes, cut anywhere by the reads.
    const frames: Buffer[] = [];
    let total = 0;
    while (total < 16 * MIB) {
      const payload = randomBytes(1 + Math.floor(Math.random() * 16_384));
      const head = Buffer.alloc(3);
      head.writeUIntBE(payload.length, 0, 3);
      frames.push(head, payload);
      total += 3 + payload.length;
    }
    const server = net.createServer((s) => s.end(Buffer.concat(frames)));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as net.AddressInfo;
    const { perTurn, count, stop } = bytesPerTurn();
    const got: Buffer[] = [];
    let changed = 0;
    let holds = 0;
    const reads: RecycledReads = new RecycledReads((bytes) => {
      let at = 0;
      while (bytes.length - at >= 3) {
        const length = bytes.readUIntBE(at, 3);
        if (bytes.length - at - 3 < length) break;
        const payload = bytes.subarray(at + 3, at + 3 + length);
        got.push(Buffer.from(payload));
        // Every 7th payload is held (as a relay holds DATA until written) and checked on release.
        if (got.length % 7 === 0) {
          const copy = got.at(-1)!;
          const release = reads.hold(payload);
          assert.ok(release !== undefined, "a payload of a read is in a recycled buffer");
          holds++;
          setTimeout(() => {
            if (!payload.equals(copy)) changed++;
            release();
          }, 1);
        }
        at += 3 + length;
      }
      count(at);
      return bytes.length - at;
    });
    const socket = net.connect({ port, host: "127.0.0.1", onread: reads.onread });
    reads.attach(socket);
    try {
      await new Promise((r) => socket.once("end", r));
      await sleep(20);
      assert.equal(digest(got), digest(frames.filter((_, i) => i % 2 === 1)));
      assert.ok(holds > 100);
      assert.equal(changed, 0, "a held payload changed before its release");
      // Buffers came back and were read into again (16 MiB is 64 reads of 256 KiB at least).
      assert.ok(reads.allocated < 32, `${reads.allocated} buffers of ${RECYCLED_READ_BYTES} bytes`);
      // The turn's budget (256 KiB) and at most one read past it, with a frame carried into it.
      const most = Math.max(...perTurn);
      assert.ok(most <= 256 * 1024 + RECYCLED_READ_BYTES + 16_393, `a turn handed over ${most} bytes`);
    } finally {
      stop();
      socket.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});

describe("joinSmall", () => {
  it("joins each run of small pieces (up to 256 KiB a buffer) and keeps large ones as they are, in order", () => {
    const big = Buffer.alloc(8 * 1024, 1);
    const small = (n: number, fill: number) => Buffer.alloc(n, fill);
    const out = joinSmall([small(3, 2), small(4, 3), big, small(5, 4)]);
    assert.equal(out.length, 3);
    assert.deepEqual(out[0], Buffer.concat([small(3, 2), small(4, 3)]));
    assert.equal(out[1], big);
    assert.deepEqual(out[2], small(5, 4));
    // 40 pieces of 8 KiB - 1: a run is cut before it would pass 256 KiB.
    const many = Array.from({ length: 40 }, (_, i) => small(8 * 1024 - 1, i));
    const joined = joinSmall(many);
    assert.deepEqual(
      joined.map((b) => b.length),
      [32 * (8 * 1024 - 1), 8 * (8 * 1024 - 1)],
    );
    assert.deepEqual(Buffer.concat(joined), Buffer.concat(many));
  });
});
