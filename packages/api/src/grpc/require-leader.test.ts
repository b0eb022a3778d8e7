import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NO_LEADER_ROUNDS, RequireLeaderStreams, requiresLeader } from "./require-leader.js";

describe("require-leader streams", () => {
  it("ends every open stream after three election timeouts in a row without a leader, not before", () => {
    const streams = new RequireLeaderStreams();
    const ended: string[] = [];
    streams.track(() => ended.push("a"));
    streams.track(() => ended.push("b"));
    streams.round(false);
    streams.round(false);
    // A leader seen in between starts the count again (etcd's noLeaderCnt).
    streams.round(true);
    for (let i = 1; i < NO_LEADER_ROUNDS; i++) streams.round(false);
    assert.deepEqual(ended, []);
    streams.round(false);
    assert.deepEqual(ended.sort(), ["a", "b"]);
    assert.equal(streams.open, 0);
  });

  it("a stream that closed on its own is not ended again", () => {
    const streams = new RequireLeaderStreams();
    const ended: string[] = [];
    const untrack = streams.track(() => ended.push("gone"));
    streams.track(() => ended.push("kept"));
    untrack();
    for (let i = 0; i < NO_LEADER_ROUNDS; i++) streams.round(false);
    assert.deepEqual(ended, ["kept"]);
  });

  it("only `hasleader: true` asks for a leader, as etcd's interceptor reads it", () => {
    const call = (value: string | undefined) => ({
      header: (name: string) => (name === "hasleader" ? value : undefined),
    });
    assert.equal(requiresLeader(call("true")), true);
    assert.equal(requiresLeader(call("false")), false);
    assert.equal(requiresLeader(call(undefined)), false);
  });
});
