import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";
import {
  decodeKeepAliveRequest,
  decodeKeepAliveResponse,
  encodeKeepAliveResponse,
} from "../wire/etcd-messages.js";
import { KeepAliveHub, type KeepAliveTransport } from "./keepalive-hub.js";

class FakeUpstream implements KeepAliveTransport {
  opened = 0;
  sent: bigint[] = [];
  available = true;
  clock = 0;
  timers: (() => void)[] = [];
  private onMessage: ((r: Buffer) => void) | undefined;
  private onClose: ((d: string) => void) | undefined;

  open(onMessage: (r: Buffer) => void, onClose: (d: string) => void) {
    if (!this.available) return undefined;
    this.opened++;
    this.onMessage = onMessage;
    this.onClose = onClose;
    return { send: (req: Buffer) => this.sent.push(decodeKeepAliveRequest(req)), close: () => {} };
  }
  schedule(_ms: number, fn: () => void) {
    this.timers.push(fn);
    return () => {};
  }
  now() {
    return this.clock;
  }
  answer(id: bigint, ttl: number) {
    this.onMessage!(encodeKeepAliveResponse({ id, ttl, headerBytes: undefined }));
  }
  fail() {
    this.onClose!("Connection dropped");
  }
}

class Sink {
  got: { id: bigint; ttl: number }[] = [];
  send(raw: Buffer) {
    const v = decodeKeepAliveResponse(raw);
    this.got.push({ id: v.id, ttl: v.ttl });
  }
}

const LEASE = 0x694d7b1c2d3e4f50n;

describe("KeepAliveHub", () => {
  let up: FakeUpstream;
  let hub: KeepAliveHub;
  beforeEach(() => {
    up = new FakeUpstream();
    hub = new KeepAliveHub(up, 500);
  });

  it("sends one upstream keep-alive per lease however many clients ask, and answers them all", () => {
    const sinks = [new Sink(), new Sink(), new Sink()];
    const clients = sinks.map((s) => hub.openClient(s));
    for (const c of clients) hub.onClientRequest(c, LEASE);
    hub.onClientRequest(clients[0]!, 5n);
    assert.deepEqual(up.sent, [LEASE, 5n]);
    assert.equal(up.opened, 1, "one upstream stream for every client stream");
    up.answer(LEASE, 10);
    for (const s of sinks) assert.deepEqual(s.got, [{ id: LEASE, ttl: 10 }]);
    up.answer(5n, 3);
    assert.deepEqual(sinks[0]!.got.at(-1), { id: 5n, ttl: 3 });
    assert.equal(sinks[1]!.got.length, 1);
  });

  it("answers from a recent renewal with the TTL actually left, and asks again after the window", () => {
    const a = new Sink();
    const ca = hub.openClient(a);
    hub.onClientRequest(ca, LEASE);
    up.clock = 1000;
    up.answer(LEASE, 10);
    up.clock = 1300;
    hub.onClientRequest(ca, LEASE);
    assert.deepEqual(a.got.at(-1), { id: LEASE, ttl: 9 }, "9.7 s left is reported as 9");
    assert.equal(up.sent.length, 1);
    assert.equal(hub.stats.answeredFromRecent, 1);
    up.clock = 1500;
    hub.onClientRequest(ca, LEASE);
    assert.equal(up.sent.length, 2, "past the window the member is asked again");
  });

  it("never reuses a not-found answer", () => {
    const a = new Sink();
    const ca = hub.openClient(a);
    hub.onClientRequest(ca, 9n);
    up.answer(9n, 0);
    hub.onClientRequest(ca, 9n);
    assert.equal(up.sent.length, 2);
  });

  it("re-sends in-flight keep-alives on a new stream when the upstream fails", () => {
    const a = new Sink();
    const ca = hub.openClient(a);
    hub.onClientRequest(ca, LEASE);
    up.fail();
    assert.equal(up.timers.length, 1);
    up.timers.shift()!();
    assert.equal(up.opened, 2);
    assert.deepEqual(up.sent, [LEASE, LEASE]);
    up.answer(LEASE, 10);
    assert.deepEqual(a.got, [{ id: LEASE, ttl: 10 }]);
  });

  it("waits for a member when none is available, then catches up", () => {
    up.available = false;
    const a = new Sink();
    hub.onClientRequest(hub.openClient(a), LEASE);
    assert.equal(up.sent.length, 0);
    up.available = true;
    up.timers.shift()!();
    assert.deepEqual(up.sent, [LEASE]);
  });

  it("answers every request, also two from one client for the same lease", () => {
    const a = new Sink();
    const ca = hub.openClient(a);
    hub.onClientRequest(ca, LEASE);
    hub.onClientRequest(ca, LEASE);
    assert.equal(up.sent.length, 1);
    up.answer(LEASE, 10);
    assert.equal(a.got.length, 2);
  });

  it("drops a closed client from the waiters", () => {
    const a = new Sink();
    const b = new Sink();
    const ca = hub.openClient(a);
    const cb = hub.openClient(b);
    hub.onClientRequest(ca, LEASE);
    hub.onClientRequest(cb, LEASE);
    hub.closeClient(ca);
    up.answer(LEASE, 10);
    assert.equal(a.got.length, 0);
    assert.equal(b.got.length, 1);
  });
});
