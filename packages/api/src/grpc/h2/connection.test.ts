import assert from "node:assert/strict";
import { describe, it } from "node:test";
import v8 from "node:v8";
import hpack from "hpack.js";
import { encodeLiteralHeaderBlock, HTTP2_PREFACE } from "../http2-frames.js";
import { PingStrikes } from "../keepalive.js";
import { H2ServerConnection, type H2Stream } from "./connection.js";
import { FRAME, frame, H2_ERROR, headersObject, type IncomingHeaders } from "./session.js";

interface Frame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

function parseFrames(bytes: Buffer): Frame[] {
  const frames: Frame[] = [];
  for (let at = 0; at < bytes.length; ) {
    const length = bytes.readUIntBE(at, 3);
    frames.push({
      type: bytes[at + 3]!,
      flags: bytes[at + 4]!,
      streamId: bytes.readUInt32BE(at + 5) & 0x7fffffff,
      payload: bytes.subarray(at + 9, at + 9 + length),
    });
    at += 9 + length;
  }
  return frames;
}

/** A connection driven by hand: what it sends, the streams it opened, and the failure if any. */
function harness(options = { windowBytes: 65_535, maxConcurrentStreams: 100 }) {
  const sent: Buffer[] = [];
  const streams: {
    stream: H2Stream;
    headers: IncomingHeaders;
    data: Buffer[];
    ended: boolean;
    closed: boolean;
  }[] = [];
  let failed: { code: number; reason: string } | undefined;
  let pings = 0;
  const connection = new H2ServerConnection(
    {
      output: (b) => sent.push(Buffer.from(b)),
      wake: () => {},
      fail: (code, reason) => {
        failed = { code, reason };
      },
    },
    {
      stream: (stream, fields) => {
        const entry = {
          stream,
          headers: headersObject(fields),
          data: [] as Buffer[],
          ended: false,
          closed: false,
        };
        streams.push(entry);
        stream.events = {
          data: (c) => entry.data.push(Buffer.from(c)),
          end: () => {
            entry.ended = true;
          },
          close: () => {
            entry.closed = true;
          },
          drain: () => {},
        };
      },
      ping: () => {
        pings++;
      },
    },
    options,
  );
  const compressor = hpack.compressor.create({ table: { maxSize: 4096 } });
  const block = (headers: [string, string][]) => {
    compressor.write(headers.map(([name, value]) => ({ name, value })));
    return compressor.read() as Buffer;
  };
  /** Everything sent since the last call, as frames; each run's output is flushed first (up to `budget` bytes of DATA). */
  const take = (budget?: number) => {
    connection.flush(budget);
    const out = parseFrames(Buffer.concat(sent));
    sent.length = 0;
    return out;
  };
  return {
    connection,
    streams,
    take,
    block,
    failed: () => failed,
    pings: () => pings,
    open: () =>
      connection.receive(Buffer.concat([HTTP2_PREFACE, frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(0))])),
  };
}

const REQUEST: [string, string][] = [
  [":method", "POST"],
  [":scheme", "http"],
  [":path", "/etcdserverpb.KV/Range"],
  [":authority", "http://127.0.0.1:2379"],
  ["content-type", "application/grpc"],
  ["te", "trailers"],
  ["token", "abc"],
];

describe("H2ServerConnection", () => {
  it("sends its SETTINGS first, and acknowledges the client's", () => {
    const h = harness({ windowBytes: 1 << 20, maxConcurrentStreams: 7 });
    const first = h.take();
    assert.equal(first[0]?.type, FRAME.SETTINGS);
    assert.equal(first[0]?.payload.readUInt16BE(0), 0x3);
    assert.equal(first[0]?.payload.readUInt32BE(2), 7);
    assert.equal(first[0]?.payload.readUInt32BE(8), 1 << 20);
    assert.equal(first[1]?.type, FRAME.WINDOW_UPDATE, "the connection window raised to ours");
    assert.equal(first[1]?.payload.readUInt32BE(0), (1 << 20) - 65_535);
    h.open();
    const ack = h.take();
    assert.deepEqual(
      ack.map((f) => [f.type, f.flags]),
      [[FRAME.SETTINGS, 1]],
    );
  });

  it("hands a request's headers and body to a stream, and frames the answer", () => {
    const h = harness();
    h.open();
    h.take();
    // Split across reads anywhere: frames are put back together.
    const bytes = Buffer.concat([
      frame(FRAME.HEADERS, 0x4, 1, h.block(REQUEST)),
      frame(FRAME.DATA, 0x1, 1, Buffer.from([0, 0, 0, 0, 2, 9, 9])),
    ]);
    for (let i = 0; i < bytes.length; i += 5) h.connection.receive(bytes.subarray(i, i + 5));
    assert.equal(h.streams.length, 1);
    const s = h.streams[0]!;
    assert.equal(s.headers[":path"], "/etcdserverpb.KV/Range");
    assert.equal(
      s.headers[":authority"],
      "http://127.0.0.1:2379",
      "any authority is taken (etcd's Go client)",
    );
    assert.equal(s.headers.token, "abc");
    assert.deepEqual(Buffer.concat(s.data), Buffer.from([0, 0, 0, 0, 2, 9, 9]));
    assert.equal(s.ended, true);
    s.stream.respond(Buffer.from([0x88]));
    assert.equal(s.stream.write(Buffer.from("answer")), true);
    s.stream.end(Buffer.from([0x00]));
    const out = h.take();
    assert.deepEqual(
      out.map((f) => [f.type, f.flags, f.streamId]),
      [
        [FRAME.HEADERS, 0x4, 1],
        [FRAME.DATA, 0, 1],
        [FRAME.HEADERS, 0x5, 1],
      ],
    );
    assert.equal(out[1]!.payload.toString(), "answer");
    assert.equal(s.closed, true, "both sides ended: the stream is gone");
    assert.equal(h.connection.streams.size, 0);
  });

  it("sends no more DATA than the client's windows allow, and the trailers after the last byte", () => {
    const h = harness();
    h.connection.receive(HTTP2_PREFACE);
    const settings = Buffer.alloc(6);
    settings.writeUInt16BE(0x4, 0);
    settings.writeUInt32BE(10, 2); // stream windows of 10 bytes
    h.connection.receive(frame(FRAME.SETTINGS, 0, 0, settings));
    h.connection.receive(frame(FRAME.HEADERS, 0x5, 1, h.block(REQUEST)));
    h.take();
    const s = h.streams[0]!;
    s.stream.respond(Buffer.from([0x88]));
    s.stream.write(Buffer.alloc(25, 1));
    s.stream.end(Buffer.from([0x00]));
    let out = h.take();
    assert.deepEqual(
      out.map((f) => [f.type, f.payload.length]),
      [
        [FRAME.HEADERS, 1],
        [FRAME.DATA, 10],
      ],
    );
    const increment = Buffer.alloc(4);
    increment.writeUInt32BE(12);
    h.connection.receive(frame(FRAME.WINDOW_UPDATE, 0, 1, increment));
    out = h.take();
    assert.deepEqual(
      out.map((f) => [f.type, f.payload.length]),
      [[FRAME.DATA, 12]],
    );
    increment.writeUInt32BE(100);
    h.connection.receive(frame(FRAME.WINDOW_UPDATE, 0, 1, increment));
    out = h.take();
    assert.deepEqual(
      out.map((f) => [f.type, f.flags, f.payload.length]),
      [
        [FRAME.DATA, 0, 3],
        [FRAME.HEADERS, 0x5, 1],
      ],
    );
  });

  it("frames at most a budget of DATA per flush, the streams taking turns", () => {
    const h = harness();
    h.connection.receive(HTTP2_PREFACE);
    const settings = Buffer.alloc(6);
    settings.writeUInt16BE(0x4, 0);
    settings.writeUInt32BE(1_000_000, 2);
    h.connection.receive(frame(FRAME.SETTINGS, 0, 0, settings));
    const increment = Buffer.alloc(4);
    increment.writeUInt32BE(1_000_000);
    h.connection.receive(frame(FRAME.WINDOW_UPDATE, 0, 0, increment));
    h.connection.receive(frame(FRAME.HEADERS, 0x5, 1, h.block(REQUEST)));
    h.connection.receive(frame(FRAME.HEADERS, 0x5, 3, h.block(REQUEST)));
    const [big, small] = h.streams;
    big!.stream.respond(Buffer.from([0x88]));
    small!.stream.respond(Buffer.from([0x88]));
    h.take(0);
    big!.stream.write(Buffer.alloc(100_000, 1));
    small!.stream.write(Buffer.alloc(10, 2));
    const dataOf = (frames: Frame[]) =>
      frames.filter((f) => f.type === FRAME.DATA).map((f) => [f.streamId, f.payload.length]);
    assert.equal(h.connection.flush(40_000), 40_000);
    // The first flush's frames are what `sent` holds now; each take() below flushes once more.
    assert.deepEqual(dataOf(h.take(0)), [
      [1, 16_384],
      [1, 16_384],
      [1, 7_232],
    ]);
    assert.deepEqual(dataOf(h.take(40_000)), [
      [3, 10],
      [1, 16_384],
      [1, 16_384],
      [1, 7_222],
    ]);
    assert.deepEqual(dataOf(h.take()), [
      [1, 16_384],
      [1, 3_626],
    ]);
  });

  it("hands headers as an object with fast properties where a header named like an Object property is a header", () => {
    const h = harness();
    h.open();
    h.take();
    const odd: [string, string][] = [
      ["constructor", "c"],
      ["__proto__", "p"],
      ["tostring", "t"],
    ];
    // Literals of our own encoder after hpack.js's block (which cannot encode "__proto__").
    const oddBlock = encodeLiteralHeaderBlock(
      odd.map(([name, value]) => ({ name, value, neverIndex: false })),
    );
    h.connection.receive(frame(FRAME.HEADERS, 0x5, 1, Buffer.concat([h.block(REQUEST), oddBlock])));
    const headers = h.streams[0]!.headers;
    const proto = "__proto__"; // a header's name here, not the accessor
    assert.deepEqual(
      [headers.constructor, headers[proto], headers.tostring, headers.toString, headers.hasOwnProperty],
      ["c", "p", "t", undefined, undefined],
    );
    assert.deepEqual(
      Object.keys(headers),
      [...REQUEST, ...odd].map(([name]) => name),
    );
    // V8's own view (a dictionary-mode object costs a hash lookup per header read).
    v8.setFlagsFromString("--allow-natives-syntax");
    const hasFastProperties = new Function("o", "return %HasFastProperties(o)") as (o: object) => boolean;
    const plain = h.streams.length;
    h.connection.receive(frame(FRAME.HEADERS, 0x5, 3, h.block(REQUEST)));
    assert.equal(h.streams.length, plain + 1);
    assert.equal(hasFastProperties(h.streams.at(-1)!.headers), true);
  });

  it("puts a header block split over CONTINUATION frames together", () => {
    const h = harness();
    h.open();
    const block = h.block(REQUEST);
    h.connection.receive(frame(FRAME.HEADERS, 0x1, 3, block.subarray(0, 4)));
    h.connection.receive(frame(FRAME.CONTINUATION, 0, 3, block.subarray(4, 9)));
    assert.equal(h.streams.length, 0);
    h.connection.receive(frame(FRAME.CONTINUATION, 0x4, 3, block.subarray(9)));
    assert.equal(h.streams[0]?.headers[":path"], "/etcdserverpb.KV/Range");
    assert.equal(h.streams[0]?.ended, true);
  });

  it("answers a PING with its payload, and closes a stream the client resets", () => {
    const h = harness();
    h.open();
    h.connection.receive(frame(FRAME.HEADERS, 0x4, 1, h.block(REQUEST)));
    h.take();
    h.connection.receive(frame(FRAME.PING, 0, 0, Buffer.from("12345678")));
    const out = h.take();
    assert.equal(out[0]?.type, FRAME.PING);
    assert.equal(out[0]?.flags, 1);
    assert.equal(out[0]?.payload.toString(), "12345678");
    assert.equal(h.pings(), 1);
    h.connection.receive(frame(FRAME.RST_STREAM, 0, 1, Buffer.from([0, 0, 0, H2_ERROR.CANCEL])));
    assert.equal(h.streams[0]?.closed, true);
    assert.equal(h.streams[0]?.stream.write(Buffer.from("late")), false, "nothing is sent on it");
  });

  it("hands a PING's ACK to the I/O's outputLater when it has one (to ride with the next write)", () => {
    const now: Buffer[] = [];
    const later: Buffer[] = [];
    const connection = new H2ServerConnection(
      {
        output: (b) => now.push(Buffer.from(b)),
        outputLater: (b) => later.push(Buffer.from(b)),
        wake: () => {},
        fail: () => {},
      },
      { stream: () => {} },
      { windowBytes: 65_535, maxConcurrentStreams: 100 },
    );
    connection.receive(Buffer.concat([HTTP2_PREFACE, frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(0))]));
    now.length = 0;
    connection.receive(frame(FRAME.PING, 0, 0, Buffer.from("12345678")));
    assert.deepEqual(now, [], "not written at once");
    const [ack] = parseFrames(Buffer.concat(later));
    assert.equal(ack?.type, FRAME.PING);
    assert.equal(ack?.flags, 1);
    assert.equal(ack?.payload.toString(), "12345678");
  });

  it("tells a client still sending to stop once the answer is out (RST_STREAM NO_ERROR)", () => {
    const h = harness();
    h.open();
    h.connection.receive(frame(FRAME.HEADERS, 0x4, 1, h.block(REQUEST)));
    h.take();
    const s = h.streams[0]!;
    s.stream.respond(Buffer.from([0x88]), true);
    const out = h.take();
    assert.deepEqual(
      out.map((f) => [f.type, f.flags]),
      [
        [FRAME.HEADERS, 0x5],
        [FRAME.RST_STREAM, 0],
      ],
    );
    assert.equal(out[1]!.payload.readUInt32BE(0), H2_ERROR.NO_ERROR);
    assert.equal(s.closed, true);
    // DATA still in flight for it is dropped, not an error.
    h.connection.receive(frame(FRAME.DATA, 0x1, 1, Buffer.from("x")));
    assert.equal(h.failed(), undefined);
  });

  it("refuses streams over the concurrency limit, and after GOAWAY", () => {
    const h = harness({ windowBytes: 65_535, maxConcurrentStreams: 1 });
    h.open();
    h.connection.receive(frame(FRAME.HEADERS, 0x4, 1, h.block(REQUEST)));
    h.connection.receive(frame(FRAME.HEADERS, 0x4, 3, h.block(REQUEST)));
    let out = h.take().filter((f) => f.type === FRAME.RST_STREAM);
    assert.deepEqual(
      out.map((f) => [f.streamId, f.payload.readUInt32BE(0)]),
      [[3, H2_ERROR.REFUSED_STREAM]],
    );
    h.connection.goAway();
    h.streams[0]!.stream.reset(H2_ERROR.CANCEL);
    h.connection.receive(frame(FRAME.HEADERS, 0x4, 5, h.block(REQUEST)));
    out = h.take();
    const goaway = out.find((f) => f.type === FRAME.GOAWAY)!;
    assert.equal(goaway.payload.readUInt32BE(0), 3, "the last stream it saw");
    assert.deepEqual(
      out.filter((f) => f.type === FRAME.RST_STREAM).map((f) => [f.streamId, f.payload.readUInt32BE(0)]),
      [
        [1, H2_ERROR.CANCEL],
        [5, H2_ERROR.REFUSED_STREAM],
      ],
    );
    assert.equal(h.streams.length, 1);
  });

  it("ends the connection on what is not HTTP/2: a bad preface, an oversized frame", () => {
    const bad = harness();
    bad.connection.receive(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert.equal(bad.failed()?.code, H2_ERROR.PROTOCOL_ERROR);
    assert.equal(bad.take().at(-1)?.type, FRAME.GOAWAY);

    const big = harness();
    big.open();
    const header = Buffer.alloc(9);
    header.writeUIntBE(20_000, 0, 3);
    big.connection.receive(Buffer.concat([header, Buffer.alloc(10)]));
    assert.equal(big.failed()?.code, H2_ERROR.FRAME_SIZE_ERROR);

    const stray = harness();
    stray.open();
    stray.connection.receive(frame(FRAME.DATA, 0, 9, Buffer.from("x")));
    assert.equal(stray.failed()?.code, H2_ERROR.PROTOCOL_ERROR, "DATA on a stream never opened");
  });

  it("acknowledges received DATA once half a window was used", () => {
    const h = harness({ windowBytes: 100, maxConcurrentStreams: 10 });
    h.open();
    h.connection.receive(frame(FRAME.HEADERS, 0x4, 1, h.block(REQUEST)));
    h.take();
    h.connection.receive(frame(FRAME.DATA, 0, 1, Buffer.alloc(30)));
    assert.equal(h.take().length, 0);
    h.connection.receive(frame(FRAME.DATA, 0, 1, Buffer.alloc(30)));
    const updates = h.take().filter((f) => f.type === FRAME.WINDOW_UPDATE);
    assert.deepEqual(updates.map((f) => [f.streamId, f.payload.readUInt32BE(0)]).sort(), [
      [0, 60],
      [1, 60],
    ]);
  });
});

describe("H2ServerConnection flow control on what it receives", () => {
  it("ends the connection when a client sends past our window", () => {
    const h = harness({ windowBytes: 100, maxConcurrentStreams: 10 });
    h.open();
    h.connection.receive(frame(FRAME.HEADERS, 0x4, 1, h.block(REQUEST)));
    h.connection.receive(frame(FRAME.DATA, 0, 1, Buffer.alloc(60)));
    assert.equal(h.failed(), undefined, "within the window");
    // One read holding more than a window (all of the earlier 60 were acknowledged): no
    // WINDOW_UPDATE could have been between its frames.
    h.connection.receive(
      Buffer.concat([frame(FRAME.DATA, 0, 1, Buffer.alloc(60)), frame(FRAME.DATA, 0, 1, Buffer.alloc(50))]),
    );
    assert.equal(h.failed()?.code, H2_ERROR.FLOW_CONTROL_ERROR);
  });

  it("withholds a paused stream's WINDOW_UPDATE (not the connection's) until it resumes", () => {
    const h = harness({ windowBytes: 100, maxConcurrentStreams: 10 });
    h.open();
    h.connection.receive(frame(FRAME.HEADERS, 0x4, 1, h.block(REQUEST)));
    h.take();
    h.streams[0]!.stream.pauseReading();
    h.connection.receive(frame(FRAME.DATA, 0, 1, Buffer.alloc(60)));
    const whilePaused = h.take().filter((f) => f.type === FRAME.WINDOW_UPDATE);
    assert.deepEqual(
      whilePaused.map((f) => [f.streamId, f.payload.readUInt32BE(0)]),
      [[0, 60]],
      "the connection's window is replenished, the stream's is not",
    );
    assert.equal(h.streams[0]!.data.length, 1, "bytes already sent are still delivered");
    h.streams[0]!.stream.resumeReading();
    const resumed = h.take().filter((f) => f.type === FRAME.WINDOW_UPDATE);
    assert.deepEqual(
      resumed.map((f) => [f.streamId, f.payload.readUInt32BE(0)]),
      [[1, 60]],
    );
  });
});

describe("PingStrikes (grpc-go's enforcement policy)", () => {
  it("closes on the third early ping with no response between, and forgives after one", () => {
    const strikes = new PingStrikes(5_000);
    assert.equal(strikes.ping(0, 0), false);
    assert.equal(strikes.ping(1_000, 0), false, "strike 1");
    assert.equal(strikes.ping(2_000, 0), false, "strike 2");
    assert.equal(strikes.ping(2_500, 3), false, "a response went out: strikes reset");
    assert.equal(strikes.ping(3_000, 3), false);
    assert.equal(strikes.ping(3_100, 3), false);
    assert.equal(strikes.ping(3_200, 3), true, "the third strike");
  });

  it("takes a ping up to a tenth of MinTime early as on time", () => {
    const strikes = new PingStrikes(5_000);
    for (let t = 0; t < 10; t++) assert.equal(strikes.ping(t * 4_600, 0), false);
  });
});
