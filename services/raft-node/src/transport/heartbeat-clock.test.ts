import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Message, MessageType } from "@etcd-ts/raft";
import { HeartbeatClock } from "./heartbeat-clock.js";

const message = (type: MessageType, from: bigint, to: bigint) => ({ type, from, to }) as Message;

describe("HeartbeatClock", () => {
  it("times a heartbeat to its answer, from the oldest heartbeat not yet answered", () => {
    let now = 1000;
    const seen: [bigint, number][] = [];
    const clock = new HeartbeatClock(
      (peer, seconds) => seen.push([peer, seconds]),
      () => now,
    );
    clock.sending([message(MessageType.MsgHeartbeat, 1n, 2n), message(MessageType.MsgApp, 1n, 3n)]);
    now += 5;
    clock.sending([message(MessageType.MsgHeartbeat, 1n, 2n)]);
    now += 5;
    clock.receiving([
      message(MessageType.MsgHeartbeatResp, 3n, 1n),
      message(MessageType.MsgHeartbeatResp, 2n, 1n),
    ]);
    assert.deepEqual(seen, [[2n, 0.01]]);
    clock.receiving([message(MessageType.MsgHeartbeatResp, 2n, 1n)]);
    assert.equal(seen.length, 1, "an answer with no heartbeat outstanding is not timed");
  });

  it("forgets heartbeats that were dropped", () => {
    let now = 0;
    const seen: number[] = [];
    const clock = new HeartbeatClock(
      (_peer, seconds) => seen.push(seconds),
      () => now,
    );
    clock.sending([message(MessageType.MsgHeartbeat, 1n, 2n)]);
    clock.forget(2n);
    now = 500;
    clock.sending([message(MessageType.MsgHeartbeat, 1n, 2n)]);
    now = 501;
    clock.receiving([message(MessageType.MsgHeartbeatResp, 2n, 1n)]);
    assert.deepEqual(seen, [0.001]);
  });
});
