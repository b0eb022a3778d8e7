import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, it } from "node:test";
import { CallEvents } from "./call-events.js";

/** The same script on node:events' EventEmitter and on CallEvents: what each listener saw, in order. */
function script(emitter: EventEmitter | CallEvents): string[] {
  const log: string[] = [];
  const e = emitter as EventEmitter;
  const a = function (this: unknown, x: unknown) {
    log.push(`a ${String(x)} this=${this === emitter}`);
  };
  const b = (x: unknown) => log.push(`b ${String(x)}`);
  const once = (x: unknown) => log.push(`once ${String(x)}`);
  log.push(`emit none ${e.emit("m", 0)}`);
  e.on("m", a);
  e.once("m", once);
  e.prependListener("m", b);
  log.push(`count ${e.listenerCount("m")}`);
  log.push(`emit ${e.emit("m", 1)}`);
  e.emit("m", 2);
  // A listener that removes a later one and adds another during an emit: the removed one still
  // runs in that emit, the added one does not.
  const late = (x: unknown) => log.push(`late ${String(x)}`);
  const remover = () => {
    e.off("m", late);
    e.on("m", () => log.push("added"));
  };
  e.on("m", remover);
  e.on("m", late);
  e.emit("m", 3);
  e.emit("m", 4);
  // A once removed by its original listener before it fires.
  const gone = () => log.push("gone ran");
  e.once("x", gone);
  e.removeListener("x", gone);
  log.push(`x ${e.emit("x")} count ${e.listenerCount("x")}`);
  // The same listener twice: one removal takes the last added.
  e.on("y", b);
  e.on("y", b);
  e.off("y", b);
  log.push(`y count ${e.listenerCount("y")}`);
  e.prependOnceListener("y", once);
  e.emit("y", 5);
  e.emit("y", 6);
  e.removeAllListeners("m");
  log.push(`m after removeAll ${e.emit("m", 7)}`);
  try {
    e.emit("error", new Error("unheard"));
  } catch (err) {
    log.push(`error thrown: ${(err as Error).message}`);
  }
  e.on("error", (err: Error) => log.push(`error heard: ${err.message}`));
  e.emit("error", new Error("heard"));
  e.removeAllListeners();
  log.push(`all removed ${e.listenerCount("y")} ${e.listenerCount("error")}`);
  return log;
}

describe("CallEvents", () => {
  it("behaves as EventEmitter for the methods calls use", () => {
    assert.deepEqual(script(new CallEvents()), script(new EventEmitter()));
  });

  it("holds nothing until a listener is added", () => {
    const e = new CallEvents();
    assert.deepEqual(Object.values(e), [undefined]);
    e.emit("cancelled");
    assert.deepEqual(Object.values(e), [undefined]);
  });
});
