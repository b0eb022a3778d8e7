// The client port's first-bytes routing, against real sockets: gRPC with the :authority
// grpc-go sends for URL targets (`http://host:port`, which nghttp2 alone refuses), over one
// connection and across CONTINUATION frames; HTTP/1.1 on the same port.
import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import grpc from "@grpc/grpc-js";
import { GrpcHttp2Server } from "./http2-server.js";

/** One gRPC unary call on an HTTP/2 session; resolves with grpc-status and the answer. */
function call(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  message: Buffer,
): Promise<{ status: string | undefined; body: Buffer; rst?: number }> {
  return new Promise((resolve, reject) => {
    const req = session.request({
      ":method": "POST",
      ":path": "/t.T/Echo",
      "content-type": "application/grpc",
      te: "trailers",
      ...headers,
    });
    const chunks: Buffer[] = [];
    let status: string | undefined;
    req.on("trailers", (t) => {
      status = String(t["grpc-status"]);
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("close", () => resolve({ status, body: Buffer.concat(chunks), rst: req.rstCode }));
    req.on("error", () => {});
    session.on("error", reject);
    const frame = Buffer.alloc(5 + message.length);
    frame.writeUInt32BE(message.length, 1);
    message.copy(frame, 5);
    req.end(frame);
  });
}

describe("client port routing", () => {
  let server: GrpcHttp2Server;
  let port: number;
  const seenAuthorities: string[] = [];

  before(async () => {
    server = new GrpcHttp2Server({
      http1: (req, res) => {
        res.writeHead(200, { "content-type": "text/plain" });
        res.end(`http1 ${req.method} ${req.url}`);
      },
    });
    server.register("/t.T/Echo", {
      kind: "unary",
      handle: (c) => {
        seenAuthorities.push(String(c.metadata.get("x-big")[0] ?? "").length.toString());
        c.sendMessage(Buffer.concat([Buffer.from("echo:"), c.request]));
        c.finish({ code: grpc.status.OK });
      },
    });
    port = await server.listen("127.0.0.1:0");
  });

  after(async () => {
    await server.close(100);
  });

  it("answers calls whose :authority is a URL (grpc-go's form for URL targets), many on one connection", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      // Node's client indexes the authority in HPACK's dynamic table: the later calls refer to
      // it, so this also checks the connection's header blocks are decoded in order.
      for (let i = 0; i < 5; i++) {
        const res = await call(session, { ":authority": `http://127.0.0.1:${port}` }, Buffer.from(`m${i}`));
        assert.equal(res.rst ?? 0, 0, `call ${i} was reset`);
        assert.equal(res.status, "0");
        assert.equal(res.body.subarray(5).toString(), `echo:m${i}`);
      }
    } finally {
      session.close();
    }
  });

  it("carries a header block split over CONTINUATION frames intact", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const big = "v".repeat(40_000);
      const res = await call(
        session,
        { ":authority": `https://127.0.0.1:${port}`, "x-big": big },
        Buffer.from("big"),
      );
      assert.equal(res.status, "0");
      assert.equal(seenAuthorities.at(-1), String(big.length));
    } finally {
      session.close();
    }
  });

  it("serves plain gRPC clients as before", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const res = await call(session, {}, Buffer.from("plain"));
      assert.equal(res.status, "0");
      assert.equal(res.body.subarray(5).toString(), "echo:plain");
    } finally {
      session.close();
    }
  });

  it("hands HTTP/1.1 requests on the same port to the HTTP/1 handler", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/version?x=1`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "http1 GET /version?x=1");
  });

  it("closes HTTP/1.1 connections when no HTTP/1 handler is given", async () => {
    const bare = new GrpcHttp2Server();
    const barePort = await bare.listen("127.0.0.1:0");
    try {
      const answer = await new Promise<string>((resolve) => {
        const socket = net.connect(barePort, "127.0.0.1", () =>
          socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        );
        let got = "";
        socket.on("data", (d) => {
          got += d.toString();
        });
        socket.on("close", () => resolve(got));
        socket.on("error", () => {});
      });
      assert.equal(answer, "");
    } finally {
      await bare.close(100);
    }
  });
});
