import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EventType } from "./events.js";
import { MemoryEventLog } from "./memory-event-log.js";
import { type WatchCreateRequest, WatchFilter, type WatchResponse } from "./watch-response.js";
import {
  WATCH_DUPLICATE_ID,
  WATCH_RANGE_EMPTY,
  WatchStream,
  type WatchStreamOptions,
} from "./watch-stream.js";
import { WatchableStore, type WatchableStoreOptions } from "./watchable-store.js";

const COMPACTED = "etcdserver: mvcc: required revision has been compacted";

function request(
  fields: Partial<Omit<WatchCreateRequest, "key" | "rangeEnd">> & { key?: string; rangeEnd?: string },
) {
  return {
    startRevision: 0,
    progressNotify: false,
    filters: [],
    prevKv: false,
    watchId: 0,
    fragment: false,
    ...fields,
    key: Buffer.from(fields.key ?? "", "latin1"),
    rangeEnd: Buffer.from(fields.rangeEnd ?? "", "latin1"),
  } satisfies WatchCreateRequest;
}

function setup(storeOptions: Partial<WatchableStoreOptions> = {}, streamOptions: WatchStreamOptions = {}) {
  const log = new MemoryEventLog();
  const store = new WatchableStore({ history: log, currentRevision: 0, ...storeOptions });
  log.onApply = (revision, events) => store.notify(revision, events);
  const stream = new WatchStream(store, { progressIntervalMs: 0, ...streamOptions });
  return { log, store, stream };
}

function drain(stream: WatchStream): WatchResponse[] {
  const out: WatchResponse[] = [];
  for (let response = stream.poll(); response !== undefined; response = stream.poll()) out.push(response);
  return out;
}

/** Catch-up rounds until nothing is left unsynced; bounded so a bug cannot hang the suite. */
async function syncAll(store: WatchableStore, maxRounds = 1000): Promise<void> {
  for (let round = 0; round < maxRounds; round++) if ((await store.syncOnce()) === 0) return;
  assert.fail("watchers never caught up");
}

const keysOf = (responses: WatchResponse[]) =>
  responses.flatMap((r) => r.events.map((e) => e.kv.key.toString("latin1")));

describe("WatchStream: creating and canceling", () => {
  it("assigns increasing IDs per stream, honours client IDs and refuses duplicates as etcd does", () => {
    const { stream, log } = setup();
    log.put("x", "1");
    stream.create(request({ key: "a" }));
    stream.create(request({ key: "b", watchId: 1 }));
    stream.create(request({ key: "c" }));
    stream.create(request({ key: "d", watchId: 1 }));
    assert.deepEqual(
      drain(stream).map((r) => [r.watchId, r.created, r.canceled, r.cancelReason, r.revision]),
      [
        [0, true, false, "", 1],
        [1, true, false, "", 1],
        // 1 is taken by the client's watch: the server skips it.
        [2, true, false, "", 1],
        [-1, true, true, WATCH_DUPLICATE_ID, 1],
      ],
    );
    assert.equal(stream.watchCount, 3);
  });

  it("refuses an empty range and a negative start revision", () => {
    const { stream } = setup();
    stream.create(request({ key: "b", rangeEnd: "a" }));
    stream.create(request({ key: "a", startRevision: -1 }));
    assert.deepEqual(
      drain(stream).map((r) => [r.watchId, r.created, r.canceled, r.cancelReason]),
      [
        [-1, true, true, WATCH_RANGE_EMPTY],
        [-1, true, true, COMPACTED],
      ],
    );
    assert.equal(stream.watchCount, 0);
  });

  it("cancel answers canceled and stops events; unknown IDs are ignored", () => {
    const { stream, log, store } = setup();
    stream.create(request({ key: "a" }));
    stream.cancel(0);
    stream.cancel(42);
    log.put("a", "1");
    assert.deepEqual(
      drain(stream).map((r) => [r.watchId, r.created, r.canceled, r.events.length]),
      [
        [0, true, false, 0],
        [0, false, true, 0],
      ],
    );
    assert.equal(store.syncedCount, 0);
  });

  it("close ends next() and removes every watcher from the store", async () => {
    const { stream, store } = setup();
    stream.create(request({ key: "a" }));
    stream.create(request({ key: "a", rangeEnd: "z" }));
    drain(stream);
    const pending = stream.next();
    stream.close();
    assert.equal(await pending, undefined);
    assert.equal(store.syncedCount + store.unsyncedCount, 0);
  });

  it("onReadable tells a polling consumer when its empty queue gets a response, and only then", () => {
    const { stream, log } = setup();
    let calls = 0;
    stream.onReadable(() => calls++);
    stream.create(request({ key: "a" }));
    stream.create(request({ key: "a" }));
    assert.equal(calls, 1, "two created answers, one call");
    assert.equal(drain(stream).length, 2);
    log.put("a", "1");
    assert.equal(calls, 2, "one revision for two watchers, one call");
    assert.equal(stream.poll()?.events.length, 1);
    log.put("a", "2");
    assert.equal(calls, 2, "not while the queue still holds a response");
    assert.equal(drain(stream).length, 3);
    assert.throws(() => stream.next(), /onReadable/);
    stream.close();
    log.put("a", "3");
    assert.equal(calls, 2);
  });
});

describe("WatchStream: live events", () => {
  it("matches single keys, ranges, prefixes and from-key watches", () => {
    const { stream, log } = setup();
    stream.create(request({ key: "b" }));
    stream.create(request({ key: "b", rangeEnd: "d" }));
    stream.create(request({ key: "c", rangeEnd: "\0" }));
    stream.create(request({ key: "", rangeEnd: "\0" }));
    drain(stream);
    for (const key of ["a", "b", "bz", "c", "d", "\xff"]) log.put(Buffer.from(key, "latin1"), "v");
    const byWatch = new Map<number, string[]>();
    for (const r of drain(stream))
      byWatch.set(r.watchId, [...(byWatch.get(r.watchId) ?? []), ...keysOf([r])]);
    assert.deepEqual(byWatch.get(0), ["b"]);
    assert.deepEqual(byWatch.get(1), ["b", "bz", "c"]);
    assert.deepEqual(byWatch.get(2), ["c", "d", "\xff"]);
    assert.deepEqual(byWatch.get(3)?.length, 6);
  });

  it("a future start revision waits for that revision", () => {
    const { stream, log } = setup();
    log.put("k", "1");
    stream.create(request({ key: "k", startRevision: 4 }));
    stream.create(request({ key: "k", rangeEnd: "l", startRevision: 4 }));
    drain(stream);
    for (let i = 2; i <= 5; i++)
      log.txn([
        { op: "put", key: "k", value: String(i) },
        ...(i % 2 ? [] : [{ op: "put" as const, key: "k2", value: "x" }]),
      ]);
    assert.deepEqual(
      drain(stream).map((r) => [r.watchId, r.revision]),
      [
        [0, 4],
        [1, 4],
        [0, 5],
        [1, 5],
      ],
    );
  });

  it("delivers a transaction's events for one watcher in one response with the revision", () => {
    const { stream, log } = setup();
    stream.create(request({ key: "k/", rangeEnd: "k0" }));
    drain(stream);
    log.txn([
      { op: "put", key: "k/1", value: "a" },
      { op: "put", key: "other", value: "b" },
      { op: "put", key: "k/2", value: "c" },
    ]);
    const [response] = drain(stream);
    assert.equal(response.revision, 1);
    assert.deepEqual(keysOf([response]), ["k/1", "k/2"]);
  });

  it("sends prev_kv only to watchers that asked for it", () => {
    const { stream, log } = setup();
    stream.create(request({ key: "a", prevKv: true }));
    stream.create(request({ key: "a" }));
    log.put("a", "1");
    log.put("a", "2");
    log.delete("a");
    const responses = drain(stream).filter((r) => r.events.length > 0);
    const withPrev = responses
      .filter((r) => r.watchId === 0)
      .map((r) => r.events[0].prevKv?.value.toString());
    const without = responses.filter((r) => r.watchId === 1).map((r) => r.events[0].prevKv);
    assert.deepEqual(withPrev, [undefined, "1", "2"]);
    assert.deepEqual(without, [undefined, undefined, undefined]);
  });

  it("asks the store for prev_kv only while a watcher wants it", () => {
    const { stream, store } = setup();
    assert.equal(store.wantsPrevKv(), false);
    stream.create(request({ key: "a" }));
    assert.equal(store.wantsPrevKv(), false);
    stream.create(request({ key: "b", prevKv: true }));
    assert.equal(store.wantsPrevKv(), true);
    stream.cancel(1);
    assert.equal(store.wantsPrevKv(), false);
    stream.cancel(1);
    assert.equal(store.wantsPrevKv(), false, "a second cancel counts nothing");
  });

  it("reads prev_kv from history for a watcher whose events were applied without it", async () => {
    const log = new MemoryEventLog();
    const store = new WatchableStore({ history: log, currentRevision: 0 });
    // The store skipped prev_kv (as mvcc does when no watcher wanted it at apply time).
    log.onApply = (revision, events) =>
      store.notify(
        revision,
        events.map((e) => ({ type: e.type, kv: e.kv })),
        false,
      );
    const stream = new WatchStream(store, { progressIntervalMs: 0 });
    stream.create(request({ key: "a", prevKv: true }));
    stream.create(request({ key: "a" }));
    log.put("a", "1");
    log.put("a", "2");
    await syncAll(store);
    const responses = drain(stream).filter((r) => r.events.length > 0);
    const withPrev = responses.filter((r) => r.watchId === 0).flatMap((r) => r.events);
    assert.deepEqual(
      withPrev.map((e) => [e.kv.value.toString(), e.prevKv?.value.toString()]),
      [
        ["1", undefined],
        ["2", "1"],
      ],
    );
    const without = responses.filter((r) => r.watchId === 1).flatMap((r) => r.events);
    assert.deepEqual(
      without.map((e) => e.kv.value.toString()),
      ["1", "2"],
    );
  });

  it("applies NOPUT and NODELETE, sending nothing for a revision that filters empty", () => {
    const { stream, log } = setup();
    stream.create(request({ key: "a", filters: [WatchFilter.NOPUT] }));
    stream.create(request({ key: "a", filters: [WatchFilter.NODELETE] }));
    drain(stream);
    log.put("a", "1");
    log.delete("a");
    const responses = drain(stream);
    assert.deepEqual(
      responses.map((r) => [r.watchId, r.revision, r.events.map((e) => e.type)]),
      [
        [1, 1, [EventType.PUT]],
        [0, 2, [EventType.DELETE]],
      ],
    );
  });

  it("fans one event out to thousands of identical watchers", () => {
    const { store, log } = setup();
    const streams = Array.from({ length: 20 }, () => new WatchStream(store, { progressIntervalMs: 0 }));
    for (const stream of streams)
      for (let i = 0; i < 100; i++) stream.create(request({ key: "p/", rangeEnd: "p0" }));
    for (const stream of streams) drain(stream);
    log.put("p/x", "v");
    let delivered = 0;
    for (const stream of streams) delivered += keysOf(drain(stream)).filter((k) => k === "p/x").length;
    assert.equal(delivered, 2000);
  });
});

describe("WatchStream: fragmentation", () => {
  it("splits a large revision only for watches created with fragment", () => {
    const maxResponseBytes = 2000;
    const { stream, log } = setup({}, { maxResponseBytes });
    stream.create(request({ key: "f/", rangeEnd: "f0", fragment: true }));
    stream.create(request({ key: "f/", rangeEnd: "f0" }));
    drain(stream);
    log.txn(
      Array.from({ length: 20 }, (_, i) => ({ op: "put" as const, key: `f/${i}`, value: "x".repeat(300) })),
    );
    const responses = drain(stream);
    const fragmented = responses.filter((r) => r.watchId === 0);
    const whole = responses.filter((r) => r.watchId === 1);
    assert.equal(whole.length, 1);
    assert.equal(whole[0].events.length, 20);
    assert.ok(fragmented.length > 1);
    assert.deepEqual(
      fragmented.map((r) => r.fragment),
      fragmented.map((_, i) => i < fragmented.length - 1),
    );
    assert.deepEqual(keysOf(fragmented), keysOf(whole));
    assert.ok(fragmented.every((r) => r.revision === 1));
  });
});

describe("WatchableStore: catch-up from history", () => {
  it("a watch from an old revision gets exactly the history, then live events", async () => {
    const { stream, store, log } = setup({ maxEventsPerSync: 4 });
    for (let i = 1; i <= 30; i++) log.put(i % 3 === 0 ? "other" : "w", String(i));
    stream.create(request({ key: "w", startRevision: 10 }));
    assert.equal(store.unsyncedCount, 1);
    await syncAll(store);
    assert.equal(store.syncedCount, 1);
    log.put("w", "31");
    const revisions = drain(stream).flatMap((r) => r.events.map((e) => e.kv.modRevision));
    const expected = [];
    for (let i = 10; i <= 31; i++) if (i % 3 !== 0) expected.push(i);
    assert.deepEqual(revisions, expected);
  });

  it("chunked catch-up answers carry the revision they reach, never beyond", async () => {
    const { stream, store, log } = setup({ maxEventsPerSync: 5 });
    for (let i = 1; i <= 12; i++) log.put("w", String(i));
    stream.create(request({ key: "w", startRevision: 1 }));
    drain(stream);
    await syncAll(store);
    const responses = drain(stream);
    assert.deepEqual(
      responses.map((r) => r.revision),
      [5, 10, 12],
    );
    for (const r of responses) assert.ok(r.events.every((e) => e.kv.modRevision <= r.revision));
  });

  it("no gaps or duplicates across the sync boundary while writes continue during reads", async () => {
    const { store, log } = setup({ maxEventsPerSync: 3, maxWatchersPerSync: 4 });
    const streams = Array.from({ length: 3 }, () => new WatchStream(store, { progressIntervalMs: 0 }));
    const keys = ["a", "b", "c", "d"];
    let writes = 0;
    const write = () => {
      writes++;
      log.txn([
        { op: "put", key: keys[writes % 4], value: String(writes) },
        { op: "put", key: keys[(writes * 7) % 4], value: String(writes) },
      ]);
      if (writes % 5 === 0) log.delete(keys[writes % 3]);
    };
    // The first 25 history reads each let two more transactions land before they return
    // (bounded: writes outpacing catch-up forever would never let it finish).
    let racingReads = 25;
    log.beforeRead = async () => {
      if (racingReads-- > 0) for (let i = 0; i < 2; i++) write();
    };
    for (let i = 0; i < 20; i++) write();
    // Watchers over different ranges and start points, some created mid-way.
    const specs = [
      { key: "a", startRevision: 1 },
      { key: "a", rangeEnd: "c", startRevision: 5 },
      { key: "", rangeEnd: "\0", startRevision: 12 },
      { key: "b", startRevision: 0 },
      { key: "c", rangeEnd: "\0", startRevision: 2, prevKv: true },
    ];
    const created: { stream: WatchStream; spec: (typeof specs)[number]; from: number }[] = [];
    for (const [i, spec] of specs.entries()) {
      const stream = streams[i % streams.length];
      created.push({
        stream,
        spec,
        from: spec.startRevision === 0 ? log.currentRevision + 1 : spec.startRevision,
      });
      stream.create(request(spec));
      await store.syncOnce();
      write();
    }
    await syncAll(store);
    log.beforeRead = null;
    for (let i = 0; i < 5; i++) write();
    assert.equal(store.unsyncedCount, 0);

    const received = new Map<WatchStream, WatchResponse[]>();
    for (const stream of streams) received.set(stream, drain(stream));
    for (const [id, { stream, spec, from }] of created.entries()) {
      const watchId = streams.indexOf(stream) === id % streams.length ? Math.floor(id / streams.length) : -2;
      const got = received
        .get(stream)!
        .filter((r) => r.watchId === watchId)
        .flatMap((r) => r.events.map((e) => `${e.kv.modRevision}:${e.kv.key}:${e.type}`));
      const { events: all } = await log.eventsBetween(from, log.currentRevision, { withPrevKv: false });
      const lo = spec.key === "" ? "\0" : spec.key;
      const inRange = (key: string) =>
        spec.rangeEnd === undefined
          ? key === lo
          : key >= lo && (spec.rangeEnd === "\0" || key < spec.rangeEnd);
      const expected = all
        .filter((e) => inRange(e.kv.key.toString("latin1")))
        .map((e) => `${e.kv.modRevision}:${e.kv.key}:${e.type}`);
      assert.ok(expected.length > 5, "the scenario must exercise the watcher");
      assert.deepEqual(got, expected, `watcher ${id} (${JSON.stringify(spec)})`);
    }
  });

  it("a start revision below the compaction is canceled with compact_revision after created", async () => {
    const { stream, store, log } = setup();
    for (let i = 1; i <= 10; i++) log.put("k", String(i));
    log.compact(6);
    stream.create(request({ key: "k", startRevision: 3 }));
    stream.create(request({ key: "k", startRevision: 6 }));
    await syncAll(store);
    const responses = drain(stream);
    assert.deepEqual(
      responses.map((r) => [r.watchId, r.created, r.canceled, r.compactRevision, r.events.length]),
      [
        [0, true, false, 0, 0],
        [1, true, false, 0, 0],
        [0, false, true, 6, 0],
        [1, false, false, 0, 5],
      ],
    );
    assert.equal(stream.watchCount, 1);
  });

  it("compaction racing a history read cancels the watcher instead of sending a partial history", async () => {
    const { stream, store, log } = setup();
    for (let i = 1; i <= 10; i++) log.put("k", String(i));
    stream.create(request({ key: "k", startRevision: 2 }));
    log.beforeRead = async () => log.compact(5);
    await store.syncOnce();
    log.beforeRead = null;
    await syncAll(store);
    const responses = drain(stream);
    assert.deepEqual(
      responses.map((r) => [r.canceled, r.compactRevision, r.events.length]),
      [
        [false, 0, 0],
        [true, 5, 0],
      ],
    );
  });

  it("one round reads past every non-matching revision: the limit counts matching events only", async () => {
    const { stream, store, log } = setup({ maxEventsPerSync: 3 });
    for (let i = 1; i <= 5_000; i++) log.put(`other/${i % 50}`, String(i));
    for (let i = 1; i <= 4; i++) log.put("new/k", String(i));
    log.put("other/0", "tail");
    stream.create(request({ key: "new/", rangeEnd: "new0", startRevision: 1 }));
    drain(stream);
    let reads = 0;
    log.beforeRead = async () => {
      reads++;
    };
    await syncAll(store);
    const responses = drain(stream);
    // Three matching events fill the first round (its answer reaches the third one's revision),
    // the second round takes the fourth and the non-matching tail: two reads for 5,005 revisions.
    assert.equal(reads, 2);
    assert.deepEqual(
      responses.map((r) => [r.revision, r.events.map((e) => e.kv.modRevision)]),
      [
        [5_003, [5_001, 5_002, 5_003]],
        [5_005, [5_004]],
      ],
    );
    assert.equal(store.syncedCount, 1);
  });

  it("a round's read keeps only events its watchers match (memory bounded by the limit, not the lag)", async () => {
    const { stream, store, log } = setup({ maxEventsPerSync: 100 });
    for (let i = 1; i <= 2_000; i++) log.put(i % 2 === 0 ? "even" : "odd", String(i));
    const read = await log.eventsBetween(1, log.currentRevision, {
      withPrevKv: false,
      matches: (key) => key === "even",
      limit: 100,
    });
    assert.equal(read.events.length, 100);
    assert.ok(read.events.every((e) => e.kv.key.toString() === "even"));
    assert.equal(read.nextRevision, 201);
    stream.create(request({ key: "even", startRevision: 1 }));
    await syncAll(store);
    const revisions = drain(stream).flatMap((r) => r.events.map((e) => e.kv.modRevision));
    assert.deepEqual(
      revisions,
      Array.from({ length: 1_000 }, (_, i) => 2 * (i + 1)),
    );
  });

  it("the background loop does not wait its retry interval between rounds that advance", async () => {
    // A retry interval no test could wait out: catching up must not depend on it.
    const { stream, store, log } = setup({ maxEventsPerSync: 5, retryIntervalMs: 3_600_000 });
    for (let i = 1; i <= 200; i++) log.put("k", String(i));
    store.start();
    try {
      stream.create(request({ key: "k", startRevision: 1 }));
      const deadline = Date.now() + 10_000;
      const revisions: number[] = [];
      while (store.unsyncedCount > 0 && Date.now() < deadline) {
        for (const r of drain(stream)) revisions.push(...r.events.map((e) => e.kv.modRevision));
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      for (const r of drain(stream)) revisions.push(...r.events.map((e) => e.kv.modRevision));
      assert.equal(store.unsyncedCount, 0);
      assert.deepEqual(
        revisions,
        Array.from({ length: 200 }, (_, i) => i + 1),
      );
    } finally {
      store.stop();
    }
  });

  it("the background loop catches watchers up on its own timer", async () => {
    const queued: (() => void)[] = [];
    const timer = { setTimeout: (fn: () => void) => queued.push(fn), clearTimeout: () => {} };
    const { stream, store, log } = setup({ timer });
    for (let i = 1; i <= 5; i++) log.put("k", String(i));
    store.start();
    stream.create(request({ key: "k", startRevision: 1 }));
    for (let i = 0; i < 20 && store.unsyncedCount > 0; i++) {
      const fn = queued.shift();
      if (fn === undefined) await new Promise((resolve) => setImmediate(resolve));
      else fn();
      await new Promise((resolve) => setImmediate(resolve));
    }
    store.stop();
    assert.equal(store.unsyncedCount, 0);
    assert.equal(keysOf(drain(stream)).length, 5);
  });
});

describe("WatchableStore: slow consumers", () => {
  it("a full stream parks its watcher in catch-up with bounded memory, then it resumes without loss", async () => {
    const { stream, store, log } = setup({ maxEventsPerSync: 10 }, { maxPendingEventResponses: 4 });
    stream.create(request({ key: "s" }));
    drain(stream);
    for (let i = 1; i <= 100; i++) log.put("s", String(i));
    // Nothing read by the client: at most 4 + 1 (one per watcher) responses are held.
    assert.equal(stream.pendingCount, 5);
    assert.equal(store.unsyncedCount, 1);
    // Catch-up does not read history for a stream that cannot take it.
    log.beforeRead = async () => assert.fail("history read for a full stream");
    await store.syncOnce();
    log.beforeRead = null;

    const revisions: number[] = [];
    for (let round = 0; round < 100 && (store.unsyncedCount > 0 || stream.pendingCount > 0); round++) {
      for (const r of drain(stream)) revisions.push(...r.events.map((e) => e.kv.modRevision));
      await store.syncOnce();
      assert.ok(stream.pendingCount <= 5);
    }
    for (const r of drain(stream)) revisions.push(...r.events.map((e) => e.kv.modRevision));
    assert.deepEqual(
      revisions,
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
    assert.equal(store.syncedCount, 1);
    log.put("s", "live");
    assert.deepEqual(
      drain(stream).map((r) => r.revision),
      [101],
    );
  });
});

describe("WatchStream: progress", () => {
  it("answers a progress request with -1 and the current revision only when all watchers are synced", async () => {
    const { stream, store, log } = setup();
    stream.requestProgress();
    assert.deepEqual(drain(stream), [], "no watchers: nothing to report, as etcd");
    log.put("a", "1");
    log.put("a", "2");
    stream.create(request({ key: "a" }));
    stream.create(request({ key: "a", startRevision: 1 }));
    drain(stream);
    stream.requestProgress();
    assert.deepEqual(drain(stream), [], "one watcher still unsynced");
    await syncAll(store);
    drain(stream);
    stream.requestProgress();
    assert.deepEqual(
      drain(stream).map((r) => [r.watchId, r.revision, r.events.length]),
      [[-1, 2, 0]],
    );
  });

  it("progress_notify reports idle synced watchers per tick and skips a tick after events", () => {
    const intervals: { fn: () => void; ms: number }[] = [];
    const timer = {
      setInterval: (fn: () => void, ms: number) => intervals.push({ fn, ms }),
      clearInterval: () => {},
    };
    const { stream, log } = setup({}, { progressIntervalMs: 1000, timer, random: () => 0.5 });
    assert.equal(intervals[0].ms, 1050);
    stream.create(request({ key: "a", progressNotify: true }));
    stream.create(request({ key: "b" }));
    drain(stream);
    intervals[0].fn();
    assert.deepEqual(
      drain(stream).map((r) => [r.watchId, r.revision]),
      [[0, 0]],
    );
    log.put("a", "1");
    intervals[0].fn();
    assert.deepEqual(
      drain(stream).map((r) => [r.watchId, r.events.length]),
      [[0, 1]],
      "an event since the last tick elides the notification",
    );
    intervals[0].fn();
    assert.deepEqual(
      drain(stream).map((r) => [r.watchId, r.revision, r.events.length]),
      [[0, 1, 0]],
    );
  });
});
