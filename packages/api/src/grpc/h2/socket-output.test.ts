// SocketOutput: one socket write per turn, and bytes pushed "later" (a PING's ACK) riding at the
// end of the next write, or going alone once they waited LATER_MAX_MS.
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { SocketOutput } from "./socket-output.js";

/** A socket stand-in that records each write (Node's Writable; nothing of ours is replaced). */
function recorder() {
  const writes: Buffer[] = [];
  const socket = new Writable({
    write(chunk: Buffer, _encoding, done) {
      writes.push(Buffer.from(chunk));
      done();
    },
  });
  let flushes = 0;
  const core = { flush: () => void flushes++, outputHeld: false };
  const output = new SocketOutput(
    socket as never,
    () => core,
    () => false,
  );
  return { writes, output, flushes: () => flushes };
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("SocketOutput", () => {
  it("writes one turn's frames in one write", async () => {
    const { writes, output } = recorder();
    output.push(Buffer.from("a"));
    output.push(Buffer.from("b"));
    await turn();
    assert.deepEqual(writes.map(String), ["ab"]);
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
