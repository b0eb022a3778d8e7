// The link proxies on real loopback sockets. This test process plays member 0 (it dials, naming
// itself in its first request as etcd's rafthttp does), an echo server plays member 1's peer
// listener; member 2 only has links.

import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { freePort } from "./free-port.js";
import { PeerNetwork } from "./peer-network.js";

const HOST = "127.0.0.1";

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((ok) => server.listen(0, HOST, () => ok()));
  return (server.address() as net.AddressInfo).port;
}

const MEMBER_IDS: Record<string, number> = { a0: 0, a1: 1, a2: 2 };

/** A first request naming `sender` (no header: anonymous). */
function head(sender?: string): string {
  return `GET /raft/stream/message/a1 HTTP/1.1\r\nHost: x\r\n${sender === undefined ? "" : `X-Server-From: ${sender}\r\n`}\r\n`;
}

/** A client connection that sent `first`, with everything it received so far. */
async function dial(
  port: number,
  first = head("a0"),
): Promise<{ socket: net.Socket; received: () => string; closed: Promise<void> }> {
  const socket = net.connect(port, HOST);
  let data = "";
  socket.on("data", (d) => {
    data += d.toString();
  });
  socket.on("error", () => {});
  const closed = new Promise<void>((ok) => socket.once("close", () => ok()));
  await new Promise<void>((ok, fail) => {
    socket.once("connect", () => ok());
    socket.once("error", fail);
  });
  socket.write(first);
  return { socket, received: () => data, closed };
}

async function until(what: string, condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("peer network proxies", () => {
  // Member 1's listener: past each connection's first request, echoes each chunk back
  // upper-cased and records what arrived. It greets with `greeting` (HTTP/2's SETTINGS).
  let arrived = "";
  let greeting = "";
  const echo = net.createServer((s) => {
    let request = "";
    if (greeting !== "") s.write(greeting);
    s.on("data", (d) => {
      let text = d.toString();
      if (!request.endsWith("\r\n\r\n")) {
        const end = (request + text).indexOf("\r\n\r\n");
        if (end < 0) {
          request += text;
          return;
        }
        text = (request + text).slice(end + 4);
        request = "\r\n\r\n";
      }
      if (text === "") return;
      arrived += text;
      s.write(text.toUpperCase());
    });
    s.on("error", () => {});
  });
  let network: PeerNetwork;
  let proxyPort: number;
  let p2: number;

  before(async () => {
    const echoPort = await listen(echo);
    const p0 = await freePort();
    p2 = await freePort();
    proxyPort = await freePort();
    network = new PeerNetwork(HOST, [p0, proxyPort, p2], [0, echoPort, 0], (id) => MEMBER_IDS[id]);
    await network.start();
  });
  after(async () => {
    await network.close();
    await new Promise<void>((ok) => echo.close(() => ok()));
  });

  test("open links carry bytes both ways, attributed to the member the first request names", async () => {
    arrived = "";
    const c = await dial(proxyPort);
    c.socket.write("hello");
    await until("echo", () => c.received() === "HELLO");
    assert.equal(arrived, "hello");
    // Attributed to member 0: member 2's links do not touch it.
    network.isolate(2, "stall");
    c.socket.write("!");
    await until("echo past member 2's cut", () => c.received() === "HELLO!");
    network.isolate(2, "open");
    c.socket.destroy();
  });

  test("what the member says before the first request reaches the dialler (HTTP/2's SETTINGS)", async () => {
    greeting = "settings";
    const c = await dial(proxyPort, "");
    await until("the greeting", () => c.received() === "settings");
    c.socket.write(head("a0"));
    c.socket.write("x");
    await until("echo", () => c.received() === "settingsX");
    greeting = "";
    c.socket.destroy();
  });

  test("nothing crosses before the first request is whole and its link known", async () => {
    arrived = "";
    network.setLink(0, 1, "stall");
    const c = await dial(proxyPort, head("a0").slice(0, 20));
    c.socket.write(head("a0").slice(20));
    c.socket.write("y");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(arrived, "", "held with the request");
    network.setLink(0, 1, "open");
    await until("echo", () => c.received() === "Y");
    c.socket.destroy();
  });

  test("a connection naming no sender follows the most cut link into its destination", async () => {
    arrived = "";
    const before = network.stats.anonymous;
    const c = await dial(proxyPort, head());
    c.socket.write("p");
    await until("echo", () => c.received() === "P");
    assert.equal(network.stats.anonymous, before + 1);
    network.setLink(2, 1, "stall");
    c.socket.write("q");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(arrived, "p", "held: it might be member 2's");
    network.setLink(2, 1, "open");
    await until("held bytes", () => c.received() === "PQ");
    network.setLink(1, 2, "drop");
    c.socket.write("r");
    await until("the request", () => arrived === "pqr");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(c.received(), "PQ", "the reply is lost: it might go to member 2");
    network.setLink(1, 2, "open");
    await c.closed;
  });

  test("stall holds bytes and delivers them in order when the link opens", async () => {
    arrived = "";
    const c = await dial(proxyPort);
    c.socket.write("a");
    await until("first echo", () => c.received() === "A");
    network.setLink(0, 1, "stall");
    c.socket.write("b");
    c.socket.write("c");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(arrived, "a", "nothing crosses a stalled link");
    network.setLink(0, 1, "open");
    await until("held bytes", () => c.received() === "ABC");
    assert.equal(arrived, "abc");
    c.socket.destroy();
  });

  test("one direction only: requests arrive, replies are held", async () => {
    arrived = "";
    const c = await dial(proxyPort);
    network.setLink(1, 0, "stall");
    c.socket.write("x");
    await until("request", () => arrived === "x");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(c.received(), "");
    network.setLink(1, 0, "open");
    await until("reply", () => c.received() === "X");
    c.socket.destroy();
  });

  test("drop discards bytes, and the connection is reset when the link opens", async () => {
    arrived = "";
    const c = await dial(proxyPort);
    c.socket.write("1");
    await until("first echo", () => c.received() === "1");
    network.isolate(0, "drop");
    c.socket.write("2");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(arrived, "1");
    network.isolate(0, "open");
    await c.closed;
    assert.equal(arrived, "1", "dropped bytes never arrive");
    assert.ok(network.stats.resets >= 1);
  });

  test("a shaped link delays every chunk and caps its rate, in order", async () => {
    arrived = "";
    const c = await dial(proxyPort);
    network.shapeLink(0, 1, { delayMs: 150, bytesPerSecond: 0 });
    let started = performance.now();
    c.socket.write("a");
    await until("the delayed echo", () => c.received() === "A");
    const delayed = performance.now() - started;
    assert.ok(delayed >= 140, `arrived after ${delayed.toFixed(0)} ms`);
    // 64 KiB at 128 KiB/s: about half a second on the way in (the reply is unshaped).
    network.shapeLink(0, 1, { delayMs: 0, bytesPerSecond: 128 * 1024 });
    const bulk = "x".repeat(64 * 1024);
    started = performance.now();
    c.socket.write(bulk);
    c.socket.write("z");
    await until("the bulk echo", () => c.received().length === 1 + bulk.length + 1);
    const throttled = performance.now() - started;
    assert.ok(throttled >= 400, `64 KiB took ${throttled.toFixed(0)} ms`);
    assert.equal(arrived, `a${bulk}z`, "in order");
    assert.ok(network.stats.shapedChunks >= 3, "the shaped chunks went through the queue");
    network.shapeLink(0, 1, undefined);
    const shapedBefore = network.stats.shapedChunks;
    c.socket.write("b");
    await until("the fast echo", () => c.received().endsWith("B"));
    // Counted, not timed: a loaded machine can take longer than a shape's delay to echo.
    assert.equal(network.stats.shapedChunks, shapedBefore, "full speed again: carried straight on");
    c.socket.destroy();
  });

  test("a connection to a member that is down is closed at once, named or not", async () => {
    // Member 2 listens nowhere (port 0).
    for (const first of [head("a0"), ""]) {
      const c = await dial(p2, first);
      await c.closed;
    }
  });

  test("a connection naming no member is refused", async () => {
    const before = network.stats.refused;
    const c = await dial(proxyPort, head("ff"));
    await c.closed;
    assert.equal(network.stats.refused, before + 1);
    assert.deepEqual(network.stats.refusedSenders, { ff: 1 });
  });

  test("one from the destination itself is carried whatever its links", async () => {
    arrived = "";
    network.isolate(1, "drop");
    const c = await dial(proxyPort, head("a1"));
    c.socket.write("s");
    await until("echo", () => c.received() === "S");
    assert.equal(network.stats.own, 1);
    network.isolate(1, "open");
    c.socket.destroy();
  });
});
