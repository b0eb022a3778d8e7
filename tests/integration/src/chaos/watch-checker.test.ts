import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Operation, WatcherRecord } from "./history.js";
import { checkRevisions, checkWatches } from "./watch-checker.js";

let nextId = 0;
function write(
  key: string,
  value: string,
  revision: number | undefined,
  t: number,
  outcome: Operation["outcome"] = "ok",
): Operation {
  return {
    id: nextId++,
    process: 0,
    kind: "write",
    key,
    value,
    invokedAt: t,
    completedAt: outcome === "unknown" ? undefined : t + 1,
    outcome,
    revision: outcome === "ok" ? revision : undefined,
  };
}

function watcher(id: number, events: [number, string, string | null][], startRevision = 1): WatcherRecord {
  return {
    id,
    startRevision,
    prefix: "/k",
    events: events.map(([modRevision, key, value]) => ({ modRevision, key, value, receivedAt: 0 })),
    restarts: 0,
    errors: [],
  };
}

// Three acknowledged writes at revisions 2, 3, 4 (revision 1 is the empty store's).
const history = [write("/k/a", "a1", 2, 0), write("/k/b", "b1", 3, 2), write("/k/a", "a2", 4, 4)];
const complete: [number, string, string | null][] = [
  [2, "/k/a", "a1"],
  [3, "/k/b", "b1"],
  [4, "/k/a", "a2"],
];

const kinds = (r: ReturnType<typeof checkWatches>) => r.problems.map((p) => p.kind);

describe("watch checker", () => {
  test("complete, ordered streams pass, including one that started later", () => {
    const report = checkWatches(history, [watcher(0, complete), watcher(1, complete.slice(1), 3)]);
    assert.deepEqual(report.problems, []);
    assert.equal(report.eventsChecked, 5);
  });

  test("an unknown write that applied must reach every watcher covering its revision", () => {
    const h = [...history, write("/k/c", "c1", undefined, 6, "unknown")];
    const ok = checkWatches(h, [
      watcher(0, [...complete, [5, "/k/c", "c1"]]),
      watcher(1, [...complete, [5, "/k/c", "c1"]]),
    ]);
    assert.deepEqual(ok.problems, []);
    const gap = checkWatches(h, [watcher(0, [...complete, [5, "/k/c", "c1"]]), watcher(1, complete)]);
    assert.deepEqual(kinds(gap), ["gap"]);
    assert.equal(gap.problems[0].watcher, 1);
  });

  test("a gap: an acknowledged revision is missing", () => {
    const report = checkWatches(history, [watcher(0, [complete[0], complete[2]])]);
    assert.deepEqual(kinds(report), ["gap"]);
    assert.equal(report.problems[0].revision, 3);
    assert.match(report.problems[0].detail, /never received \/k\/b="b1" at revision 3/);
  });

  test("a gap at the tail: the stream stopped before the last acknowledged write", () => {
    const report = checkWatches(history, [watcher(0, complete.slice(0, 2))]);
    assert.deepEqual(kinds(report), ["gap"]);
    assert.equal(report.problems[0].revision, 4);
  });

  test("a duplicate: an event delivered twice (e.g. a re-watch from the wrong revision)", () => {
    const report = checkWatches(history, [watcher(0, [complete[0], complete[1], complete[1], complete[2]])]);
    assert.deepEqual(kinds(report), ["duplicate"]);
  });

  test("out of order: a lower revision after a higher one", () => {
    const report = checkWatches(history, [watcher(0, [complete[0], complete[2], complete[1]])]);
    assert.deepEqual(kinds(report), ["out-of-order"]);
  });

  test("an event whose value was never written, or whose write failed", () => {
    const h = [...history, write("/k/c", "c-failed", undefined, 6, "fail")];
    const report = checkWatches(h, [
      watcher(0, [...complete, [5, "/k/c", "ghost"], [6, "/k/c", "c-failed"]]),
    ]);
    assert.deepEqual(kinds(report), ["value-never-written", "failed-write-applied"]);
  });

  test("an event at a different revision than the client was told", () => {
    const report = checkWatches(history, [watcher(0, [complete[0], [3, "/k/b", "b1"], [5, "/k/a", "a2"]])]);
    assert.ok(kinds(report).includes("revision-mismatch"));
  });

  test("members disagree about a revision", () => {
    const h = [
      ...history,
      write("/k/c", "c1", undefined, 6, "unknown"),
      write("/k/c", "c2", undefined, 6, "unknown"),
    ];
    const report = checkWatches(h, [
      watcher(0, [...complete, [5, "/k/c", "c1"]]),
      watcher(1, [...complete, [5, "/k/c", "c2"]]),
    ]);
    assert.ok(kinds(report).includes("disagreement"));
  });

  test("one write applied at two revisions", () => {
    const h = [...history, write("/k/c", "c1", undefined, 6, "unknown")];
    const report = checkWatches(h, [watcher(0, [...complete, [5, "/k/c", "c1"], [6, "/k/c", "c1"]])]);
    assert.ok(kinds(report).includes("applied-twice"));
  });
});

describe("revision checks", () => {
  test("acknowledged revisions follow real time and reads report the writer's revision", () => {
    const read: Operation = {
      id: 99,
      process: 1,
      kind: "read",
      key: "/k/a",
      invokedAt: 10,
      completedAt: 11,
      outcome: "ok",
      output: "a2",
      modRevision: 4,
    };
    assert.deepEqual(checkRevisions([...history, read]), []);
  });

  test("a later write with a lower revision, a reused revision, a read with the wrong mod_revision", () => {
    const h = [write("/k/a", "a1", 5, 0), write("/k/a", "a2", 4, 2), write("/k/b", "b1", 5, 10)];
    const read: Operation = {
      id: 98,
      process: 1,
      kind: "read",
      key: "/k/a",
      invokedAt: 20,
      completedAt: 21,
      outcome: "ok",
      output: "a1",
      modRevision: 7,
    };
    const kindsFound = checkRevisions([...h, read])
      .map((p) => p.kind)
      .sort();
    assert.deepEqual(kindsFound, ["applied-twice", "out-of-order", "out-of-order", "revision-mismatch"]);
  });
});
