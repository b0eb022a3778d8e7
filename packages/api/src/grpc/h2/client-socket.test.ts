// ClientSocketConnection over real sockets: TLS with a client certificate to a server that
// requires one, what it says when the handshake or ALPN fails, and a graceful close.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import tls from "node:tls";
import grpc from "@grpc/grpc-js";
import { loadServerTls } from "../../tls/server-tls.js";
import { encodeLiteralHeaderBlock } from "../http2-frames.js";
import { GrpcHttp2Server, type ServerCall } from "../http2-server.js";
import { frameGrpcMessage } from "../message-framing.js";
import { ClientSocketConnection, type ClientTls } from "./client-socket.js";
import type { IncomingHeaders } from "./session.js";

const script = resolve(import.meta.dirname, "../../../../../scripts/gen-test-certs.sh");
let dir = "";
const file = (name: string) => join(dir, name);

/** One unary call on `connection`: the answer's bytes, its trailers, and how the stream closed. */
before(() => {
  dir = mkdtempSync(join(tmpdir(), "client-socket-"));
  execFileSync("bash", [script, dir]);
});
after(() => rmSync(dir, { recursive: true, force: true }));

function call(connection: ClientSocketConnection, path: string, request: Buffer) {
  return new Promise<{ data: Buffer; trailers: IncomingHeaders | undefined; reset: number | undefined }>(
    (done) => {
      const data: Buffer[] = [];
      let trailers: IncomingHeaders | undefined;
      const block = encodeLiteralHeaderBlock(
        [
          [":method", "POST"],
          [":scheme", "https"],
          [":path", path],
          [":authority", "localhost"],
          ["content-type", "application/grpc"],
          ["te", "trailers"],
        ].map(([name, value]) => ({ name: name!, value: value!, neverIndex: false })),
      );
      const stream = connection.h2.request(block, {
        headers: (h, end) => {
          if (end) trailers = h;
        },
        data: (c) => data.push(Buffer.from(c)),
        close: (reset) => done({ data: Buffer.concat(data), trailers, reset }),
        drain: () => {},
      });
      assert.ok(stream !== undefined);
      stream.write(frameGrpcMessage(request));
      stream.end();
    },
  );
}

describe("ClientSocketConnection over TLS to a server that requires client certificates", () => {
  let server: GrpcHttp2Server;
  let port = 0;
  const held: ServerCall[] = [];

  before(async () => {
    server = new GrpcHttp2Server({
      tls: loadServerTls({
        certFile: file("server.crt"),
        keyFile: file("server.key"),
        trustedCaFile: file("ca.crt"),
        clientCertAuth: true,
      }),
    });
    server.register("/t.T/Echo", {
      kind: "unary",
      handle: (c) => {
        c.sendMessage(Buffer.concat([Buffer.from("echo:"), c.request]));
        c.finish({ code: grpc.status.OK });
      },
    });
    server.register("/t.T/Held", { kind: "unary", handle: (c) => held.push(c) });
    port = await server.listen("127.0.0.1:0");
  });
  after(async () => {
    await server.close(100);
  });

  const dial = (secure: ClientTls, events: { connected?(): void; goAway?(): void; closed?(): void } = {}) =>
    new ClientSocketConnection({ host: "127.0.0.1", port, tls: secure, windowBytes: 1 << 20, ...events });

  it("offers its certificate, agrees on h2 and carries a call", async () => {
    let connected = 0;
    const c = dial(
      {
        ca: readFileSync(file("ca.crt")),
        cert: readFileSync(file("client.crt")),
        key: readFileSync(file("client.key")),
      },
      { connected: () => connected++ },
    );
    try {
      const r = await call(c, "/t.T/Echo", Buffer.from("hi"));
      assert.equal(r.trailers?.["grpc-status"], "0");
      assert.equal(r.data.subarray(5).toString(), "echo:hi");
      assert.equal(connected, 1);
      assert.equal(c.connected, true);
    } finally {
      c.end();
    }
  });

  it("without a client certificate the server ends the connection, and the call with it", async () => {
    const c = dial({ ca: readFileSync(file("ca.crt")) });
    const r = await call(c, "/t.T/Echo", Buffer.from("hi"));
    assert.equal(r.trailers, undefined);
    await new Promise<void>((done) => (c.closed ? done() : c.socket.once("close", () => done())));
    assert.equal(c.usable, false);
  });

  it("refuses a server it does not trust before any stream is sent", async () => {
    const c = dial({
      ca: readFileSync(file("other-ca.crt")),
      cert: readFileSync(file("client.crt")),
      key: readFileSync(file("client.key")),
    });
    const r = await call(c, "/t.T/Echo", Buffer.from("hi"));
    assert.equal(r.trailers, undefined);
    assert.equal(c.connected, false);
    assert.match(c.error, /certificate/);
  });

  it("on close, lets the streams open finish, then ends the socket", async () => {
    const c = dial({
      ca: readFileSync(file("ca.crt")),
      cert: readFileSync(file("client.crt")),
      key: readFileSync(file("client.key")),
    });
    const pending = call(c, "/t.T/Held", Buffer.from("x"));
    for (let i = 0; i < 200 && held.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(held.length, 1);
    c.close();
    assert.equal(c.usable, false, "no new streams");
    held[0]!.sendMessage(Buffer.from("late"));
    held[0]!.finish({ code: grpc.status.OK });
    const r = await pending;
    assert.equal(r.trailers?.["grpc-status"], "0");
    await new Promise<void>((done) => (c.closed ? done() : c.socket.once("close", () => done())));
  });
});

describe("ClientSocketConnection to a TLS server without ALPN", () => {
  it("fails the connection, saying the server did not agree to h2", async () => {
    const d = dir;
    const server = tls.createServer(
      {
        cert: readFileSync(join(d, "server.crt")),
        key: readFileSync(join(d, "server.key")),
      },
      (s) => s.on("error", () => {}),
    );
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const c = new ClientSocketConnection({
      host: "127.0.0.1",
      port: (server.address() as { port: number }).port,
      tls: { ca: readFileSync(join(d, "ca.crt")) },
      windowBytes: 65_535,
    });
    try {
      const r = await call(c, "/t.T/Echo", Buffer.from("x"));
      assert.equal(r.trailers, undefined);
      assert.equal(c.connected, false);
      assert.match(c.error, /did not agree to HTTP\/2/);
    } finally {
      server.close();
    }
  });
});

describe("ClientSocketConnection over plain TCP", () => {
  it("dials an IPv6 host given as a URL's hostname, in brackets", async () => {
    const server = new GrpcHttp2Server({});
    server.register("/t.T/Echo", {
      kind: "unary",
      handle: (c) => {
        c.sendMessage(Buffer.concat([Buffer.from("echo:"), c.request]));
        c.finish({ code: grpc.status.OK });
      },
    });
    const port = await server.listen("[::1]:0");
    const c = new ClientSocketConnection({
      host: new URL(`http://[::1]:${port}`).hostname,
      port,
      windowBytes: 1 << 20,
    });
    try {
      const r = await call(c, "/t.T/Echo", Buffer.from("v6"));
      assert.equal(r.data.subarray(5).toString(), "echo:v6");
      assert.equal(r.trailers?.["grpc-status"], "0");
    } finally {
      c.destroy();
      await server.close(100);
    }
  });
});
