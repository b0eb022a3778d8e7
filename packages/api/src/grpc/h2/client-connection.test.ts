import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodeLiteralHeaderBlock } from "../http2-frames.js";
import { H2ClientConnection, type H2ClientStream } from "./client-connection.js";
import { H2ServerConnection, type H2Stream } from "./connection.js";
import { FRAME, frame, H2_ERROR, headersObject, type IncomingHeaders } from "./session.js";

/** A client core and a server core wired back to back in memory; `pump` moves bytes until quiet. */
function pair(serverWindow = 65_535, clientWindow = 65_535) {
  const toServer: Buffer[] = [];
  const toClient: Buffer[] = [];
  const served: { stream: H2Stream; headers: IncomingHeaders; data: Buffer[]; ended: boolean }[] = [];
  const failures: string[] = [];
  const server = new H2ServerConnection(
    {
      output: (b) => toClient.push(Buffer.from(b)),
      wake: () => {},
      fail: (_c, r) => failures.push(`server: ${r}`),
    },
    {
      stream: (stream, fields) => {
        const entry = { stream, headers: headersObject(fields), data: [] as Buffer[], ended: false };
        served.push(entry);
        stream.events = {
          data: (c) => entry.data.push(Buffer.from(c)),
          end: () => {
            entry.ended = true;
          },
          close: () => {},
          drain: () => {},
        };
      },
    },
    { windowBytes: serverWindow, maxConcurrentStreams: 100 },
  );
  const client = new H2ClientConnection(
    {
      output: (b) => toServer.push(Buffer.from(b)),
      wake: () => {},
      fail: (_c, r) => failures.push(`client: ${r}`),
    },
    { windowBytes: clientWindow },
  );
  const pump = () => {
    for (let i = 0; i < 100; i++) {
      client.flush();
      server.flush();
      if (toServer.length === 0 && toClient.length === 0) return;
      const up = Buffer.concat(toServer.splice(0));
      const down = Buffer.concat(toClient.splice(0));
      if (up.length > 0) server.receive(up);
      if (down.length > 0) client.receive(down);
    }
    throw new Error("no quiet after 100 rounds");
  };
  return { client, server, served, failures, pump, toServer, toClient };
}

/** The server's whole answer on `s`: status 200, `body` as DATA, grpc-status 0. */
function answer(s: H2Stream, body: Buffer): void {
  s.respond(encodeLiteralHeaderBlock([{ name: ":status", value: "200", neverIndex: false }]));
  s.write(body);
  s.end(encodeLiteralHeaderBlock([{ name: "grpc-status", value: "0", neverIndex: false }]));
}

/** `length` bytes counting modulo `modulus` (a prime: no frame boundary lines up with it). */
function patterned(length: number, modulus: number): Buffer {
  const body = Buffer.alloc(length);
  for (let i = 0; i < length; i++) body[i] = i % modulus;
  return body;
}

function recorder() {
  const seen = {
    headers: [] as [IncomingHeaders, boolean][],
    closed: [] as (number | undefined)[],
    drains: 0,
  };
  return {
    seen,
    events: {
      headers: (h: IncomingHeaders, end: boolean) => seen.headers.push([h, end]),
      close: (code: number | undefined) => seen.closed.push(code),
      drain: () => {
        seen.drains++;
      },
    },
  };
}

const REQUEST = encodeLiteralHeaderBlock(
  [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", "/etcdts.peer.RaftPeer/Stream"],
    [":authority", "127.0.0.1:2380"],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
    ["x-server-from", "8e9e05c52164694d"],
  ].map(([name, value]) => ({ name: name!, value: value!, neverIndex: false })),
);

/**
 * A client (on a pair with 1 MiB windows) that sent one request and whose answer, `body`, is
 * on the wire and not yet received; DATA payloads go to `got` through `keep`.
 */
function answeredOnWire(body: Buffer, keep: (c: Buffer) => Buffer = (c) => c) {
  const { client, server, served, failures, pump, toClient } = pair(1 << 20, 1 << 20);
  const got: Buffer[] = [];
  const r = recorder();
  client.request(REQUEST, { ...r.events, data: (c) => got.push(keep(c)) })!.end();
  pump();
  answer(served[0]!.stream, body);
  server.flush();
  const wire = Buffer.concat(toClient.splice(0));
  /** Every byte of `body` arrived in order, the stream closed cleanly, the connection did not fail. */
  const assertWhole = () => {
    assert.ok(Buffer.concat(got).equals(body), "every byte, in order");
    assert.deepEqual(r.seen.closed, [undefined]);
    assert.deepEqual(failures, []);
  };
  return { client, got, wire, assertWhole };
}

describe("H2ClientConnection against our server core", () => {
  it("streams request bytes in order and hears the answer's headers and trailers", () => {
    const { client, served, failures, pump } = pair();
    const r = recorder();
    const stream = client.request(REQUEST, r.events) as H2ClientStream;
    assert.equal(stream.id, 1);
    stream.write(Buffer.from("one "));
    stream.write(Buffer.from("two"));
    pump();
    assert.equal(served.length, 1);
    assert.equal(served[0]!.headers[":path"], "/etcdts.peer.RaftPeer/Stream");
    assert.equal(served[0]!.headers["x-server-from"], "8e9e05c52164694d");
    stream.write(Buffer.from(" three"));
    stream.end();
    pump();
    assert.equal(Buffer.concat(served[0]!.data).toString(), "one two three");
    assert.equal(served[0]!.ended, true);
    const s = served[0]!.stream;
    answer(s, Buffer.from([0, 0, 0, 0, 0]));
    pump();
    assert.deepEqual(
      r.seen.headers.map(([h, end]) => [h[":status"] ?? h["grpc-status"], end]),
      [
        ["200", false],
        ["0", true],
      ],
    );
    assert.deepEqual(r.seen.closed, [undefined], "both sides ended");
    assert.equal(client.streams.size, 0);
    assert.deepEqual(failures, []);
  });

  it("sends no more than the server's windows allow, and the rest as they open", () => {
    // The server's window is 65,535 bytes (as it acknowledges at half, one large write waits).
    const { client, served, failures, pump } = pair(65_535);
    const r = recorder();
    const stream = client.request(REQUEST, r.events) as H2ClientStream;
    const body = Buffer.alloc(300_000);
    for (let i = 0; i < body.length; i++) body[i] = i & 255;
    assert.equal(stream.write(body), false, "over the high-water mark: wait for drain");
    stream.end();
    pump();
    assert.ok(Buffer.concat(served[0]!.data).equals(body), "every byte, in order");
    assert.equal(served[0]!.ended, true);
    assert.equal(r.seen.drains, 1);
    assert.deepEqual(failures, []);
  });

  it("frames what a writer writes when told to go on (drain) in the same flush", () => {
    // Windows large enough that one flush sends the whole body: its writer hears `drain` then,
    // and its last bytes and END_STREAM must not wait for some later wake-up.
    const { client, server, served, failures, pump, toServer } = pair(1 << 20);
    const stream = client.request(REQUEST, {
      ...recorder().events,
      drain: () => {
        stream.write(Buffer.from("tail"));
        stream.end();
      },
    }) as H2ClientStream;
    pump();
    assert.equal(stream.write(Buffer.alloc(300_000, 7)), false);
    client.flush();
    server.receive(Buffer.concat(toServer.splice(0)));
    assert.equal(Buffer.concat(served[0]!.data).length, 300_004);
    assert.equal(served[0]!.ended, true, "END_STREAM went out in that flush");
    assert.deepEqual(failures, []);
  });

  it("ends a stream the server refuses with a trailers-only answer, and resets its own half", () => {
    const { client, served, pump } = pair();
    const r = recorder();
    const stream = client.request(REQUEST, r.events) as H2ClientStream;
    stream.write(Buffer.from("batch"));
    pump();
    served[0]!.stream.respond(
      encodeLiteralHeaderBlock([
        { name: ":status", value: "200", neverIndex: false },
        { name: "grpc-status", value: "9", neverIndex: false },
      ]),
      true,
    );
    pump();
    assert.equal(r.seen.headers.length, 1);
    assert.equal(r.seen.headers[0]![0]["grpc-status"], "9");
    assert.equal(r.seen.headers[0]![1], true, "trailers-only: END_STREAM on the one HEADERS");
    assert.equal(r.seen.closed.length, 1);
    assert.equal(stream.write(Buffer.from("more")), false, "nothing more is sent");
  });

  it("answers the server's PING, and hears the ACK of its own", () => {
    const { client, server, pump } = pair();
    let answered = 0;
    client.ping(() => answered++);
    let serverAnswered = 0;
    server.ping(() => serverAnswered++);
    pump();
    assert.equal(answered, 1);
    assert.equal(serverAnswered, 1);
  });

  it("closes the streams a GOAWAY says the server never saw, and opens no more", () => {
    const { client, server, pump } = pair();
    const first = recorder();
    client.request(REQUEST, first.events);
    pump();
    const second = recorder();
    client.request(REQUEST, second.events);
    // The GOAWAY is sent before stream 3's HEADERS reach the server: its last stream is 1.
    server.goAway();
    const goAway = frame(FRAME.GOAWAY, 0, 0, Buffer.from([0, 0, 0, 1, 0, 0, 0, 0]));
    client.receive(goAway);
    assert.deepEqual(second.seen.closed, [H2_ERROR.REFUSED_STREAM]);
    assert.deepEqual(first.seen.closed, [], "stream 1 goes on");
    assert.equal(client.request(REQUEST, recorder().events), undefined);
  });

  it("hands the answer's bytes to `data`; a paused reader holds the server at one window", () => {
    const { client, served, failures, pump } = pair(65_535, 65_535);
    const got: Buffer[] = [];
    const r = recorder();
    const stream = client.request(REQUEST, { ...r.events, data: (c) => got.push(Buffer.from(c)) })!;
    stream.end();
    pump();
    const body = patterned(300_000, 251);
    stream.pauseReading();
    const s = served[0]!.stream;
    answer(s, body);
    pump();
    const held = Buffer.concat(got).length;
    assert.ok(held > 0 && held <= 65_535, `${held} bytes arrived while paused`);
    assert.deepEqual(r.seen.closed, [], "the answer is not over");
    stream.resumeReading();
    pump();
    assert.ok(Buffer.concat(got).equals(body), "every byte, in order");
    assert.deepEqual(r.seen.closed, [undefined]);
    assert.deepEqual(failures, []);
  });

  it("completes a frame split across reads from the next read, and reads the frames after it in place", () => {
    const { client, got, wire, assertWhole } = answeredOnWire(patterned(100_000, 253));
    // Two socket reads, split inside the answer's second DATA frame (16 KiB frames).
    const split = 40_000;
    const first = Buffer.alloc(split);
    wire.copy(first, 0, 0, split);
    const second = Buffer.alloc(wire.length - split);
    wire.copy(second, 0, split);
    client.receive(first);
    const before = got.length;
    client.receive(second);
    assertWhole();
    // The split frame is joined; every later frame is a view of the second read, not a copy.
    const later = got.slice(before + 1);
    assert.ok(later.length >= 3, `${later.length} frames after the split one`);
    for (const c of later) assert.equal(c.buffer, second.buffer, "a frame after the split one was copied");
  });

  it("reads frames that span many reads smaller than a frame, byte for byte", () => {
    const { client, wire, assertWhole } = answeredOnWire(patterned(70_000, 241), (c) => Buffer.from(c));
    // Reads of 3, 5,000 and 7 bytes in turn: frame heads and payloads cut everywhere.
    const sizes = [3, 5_000, 7];
    for (let at = 0, i = 0; at < wire.length; i++) {
      const n = sizes[i % sizes.length]!;
      client.receive(Buffer.from(wire.subarray(at, at + n)));
      at += n;
    }
    assertWhole();
  });

  it("with leaveRest, leaves a frame cut by a read to the caller's next read and copies none", () => {
    const { client, got, wire, assertWhole } = answeredOnWire(patterned(100_000, 239));
    // Reads of 30,000 bytes, each after what the last one left (as RecycledReads reads).
    let carried = Buffer.alloc(0);
    for (let at = 0; at < wire.length; at += 30_000) {
      const read = Buffer.concat([carried, wire.subarray(at, at + 30_000)]);
      const before = got.length;
      const left = client.receive(read, true);
      carried = Buffer.from(read.subarray(read.length - left));
      // Every DATA payload is a view of its read: no frame joined from two reads.
      for (const c of got.slice(before)) assert.equal(c.buffer, read.buffer, "a frame was copied");
    }
    assert.equal(carried.length, 0);
    assertWhole();
  });

  it("tells its GOAWAY listener of a graceful GOAWAY, and opens no more streams", () => {
    const heard: [number, number][] = [];
    const client = new H2ClientConnection(
      { output: () => {}, wake: () => {}, fail: () => assert.fail("not a failure") },
      { windowBytes: 65_535, goAway: (last, code) => heard.push([last, code]) },
    );
    client.receive(frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(0)));
    const open = recorder();
    client.request(REQUEST, open.events);
    client.receive(frame(FRAME.GOAWAY, 0, 0, Buffer.from([0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0])));
    assert.deepEqual(heard, [[0x7fffffff, 0]]);
    assert.deepEqual(open.seen.closed, [], "a stream the server takes goes on");
    assert.equal(client.request(REQUEST, recorder().events), undefined);
  });

  it("ends the connection on a server that does not start with SETTINGS", () => {
    const failures: string[] = [];
    const client = new H2ClientConnection(
      { output: () => {}, wake: () => {}, fail: (_c, reason) => failures.push(reason) },
      { windowBytes: 65_535 },
    );
    client.receive(frame(FRAME.PING, 0, 0, Buffer.alloc(8)));
    assert.deepEqual(failures, ["the server's first frame is not SETTINGS"]);
    assert.equal(client.dead, true);
  });
});
