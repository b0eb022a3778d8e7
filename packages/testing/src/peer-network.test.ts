// The link proxies on real loopback sockets. This test process plays member 0 (it dials), an
// echo server plays member 1's peer listener, so attribution through /proc finds our own pid.

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

/** A client connection with everything it received so far. */
async function dial(
  port: number,
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
  // Member 1's listener: echoes each chunk back upper-cased, and records what arrived.
  let arrived = "";
  const echo = net.createServer((s) => {
    s.on("data", (d) => {
      arrived += d.toString();
      s.write(d.toString().toUpperCase());
    });
    s.on("error", () => {});
  });
  let network: PeerNetwork;
  let proxyPort: number;
  let pids = new Map<number, number>([[0, process.pid]]);

  before(async () => {
    const echoPort = await listen(echo);
    const p0 = await freePort();
    proxyPort = await freePort();
    network = new PeerNetwork(HOST, [p0, proxyPort], [0, echoPort], () => pids);
    await network.start();
  });
  after(async () => {
    await network.close();
    await new Promise<void>((ok) => echo.close(() => ok()));
  });

  test("open links carry bytes both ways, attributed to the dialling process", async () => {
    arrived = "";
    const c = await dial(proxyPort);
    c.socket.write("hello");
    await until("echo", () => c.received() === "HELLO");
    assert.equal(arrived, "hello");
    c.socket.destroy();
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
    network.shapeLink(0, 1, undefined);
    started = performance.now();
    c.socket.write("b");
    await until("the fast echo", () => c.received().endsWith("B"));
    assert.ok(performance.now() - started < 140, "full speed again");
    c.socket.destroy();
  });

  test("a connection no member owns is refused", async () => {
    pids = new Map([[0, 999_999_999]]);
    const before = network.stats.unattributed;
    const c = await dial(proxyPort);
    await c.closed;
    assert.equal(network.stats.unattributed, before + 1);
    pids = new Map([[0, process.pid]]);
  });
});
