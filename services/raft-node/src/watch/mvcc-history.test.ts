import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { LEASE_COLUMN, LeaseStateMachine, Lessor, leasedKeyView } from "../lease/mod.js";
import { type ApplyResult, type MvccRequest, MvccStore, putRequest } from "../mvcc/mod.js";
import { EventType } from "./events.js";
import { type ConnectedWatchableStore, connectWatchableStore } from "./mvcc-history.js";
import type { WatchCreateRequest, WatchResponse } from "./watch-response.js";
import { WatchStream } from "./watch-stream.js";

interface Harness {
  store: MvccStore;
  connected: ConnectedWatchableStore;
  leases: LeaseStateMachine;
  apply(request: MvccRequest): Promise<ApplyResult>;
  put(key: string, value: string, lease?: bigint): Promise<void>;
}

async function withHarness(run: (h: Harness) => Promise<void>, maxEventsPerSync = 1000): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "watch-mvcc-"));
  const lessor = new Lessor({ clock: () => 0, minTtlSeconds: 1 });
  const store = await MvccStore.open(dir, {
    extraColumns: [LEASE_COLUMN],
    leaseExists: (id) => lessor.lookup(id) !== undefined,
  });
  const leases = new LeaseStateMachine(lessor, leasedKeyView(store));
  store.subscribe((txn) => leases.observe(txn));
  // Tests drive catch-up rounds themselves; the loop's timer is never fired.
  const connected = connectWatchableStore(store, {
    maxEventsPerSync,
    timer: { setTimeout: () => null, clearTimeout: () => {} },
  });
  let index = 0;
  const apply = (request: MvccRequest) => store.apply({ index: ++index, term: 1, request });
  const put = async (key: string, value: string, lease = 0n) => {
    const result = await apply({ put: putRequest({ key, value, lease }) });
    assert.equal(result.status, "applied");
  };
  try {
    await run({ store, connected, leases, apply, put });
  } finally {
    connected.disconnect();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function create(fields: Partial<WatchCreateRequest>): WatchCreateRequest {
  return {
    key: Buffer.alloc(0),
    rangeEnd: Buffer.alloc(0),
    startRevision: 0,
    progressNotify: false,
    filters: [],
    prevKv: false,
    watchId: 0,
    fragment: false,
    ...fields,
  };
}

function drain(stream: WatchStream): WatchResponse[] {
  const out: WatchResponse[] = [];
  for (let r = stream.poll(); r !== undefined; r = stream.poll()) out.push(r);
  return out;
}

const events = (responses: WatchResponse[]) =>
  responses.flatMap((r) => r.events.map((e) => `${e.kv.modRevision}:${e.kv.key}:${e.kv.value}`));

describe("watch on the mvcc store", () => {
  it("history then live events, exactly once, while writes are applied during catch-up reads", () =>
    withHarness(async ({ connected, put }) => {
      // Revision 1 is the empty store; puts make revisions 2..41.
      for (let i = 0; i < 40; i++) await put(i % 2 === 0 ? "w/a" : "other", String(i));
      const stream = new WatchStream(connected.watchable, { progressIntervalMs: 0 });
      stream.create(
        create({ key: Buffer.from("w/"), rangeEnd: Buffer.from("w0"), startRevision: 5, prevKv: true }),
      );
      let written = 40;
      for (let round = 0; round < 50 && connected.watchable.unsyncedCount > 0; round++) {
        const sync = connected.watchable.syncOnce();
        // Applies land while the round's history read is on the libuv pool.
        if (written < 60) await put(written % 3 === 0 ? "w/b" : "other", String(written++));
        await sync;
      }
      assert.equal(connected.watchable.unsyncedCount, 0);
      assert.ok(written > 45, "writes must have landed during catch-up");
      for (let i = 0; i < 5; i++) await put("w/c", `live-${i}`);

      const got = drain(stream).filter((r) => !r.created);
      // The expected sequence, from what was written: revision = index + 2.
      const expected: string[] = [];
      for (let i = 0; i < written; i++) {
        const key = i < 40 ? (i % 2 === 0 ? "w/a" : "other") : i % 3 === 0 ? "w/b" : "other";
        if (key !== "other" && i + 2 >= 5) expected.push(`${i + 2}:${key}:${i}`);
      }
      for (let i = 0; i < 5; i++) expected.push(`${written + 2 + i}:w/c:live-${i}`);
      assert.deepEqual(events(got), expected);
      // prev_kv from history and live alike: every w/a update after the first has one.
      const prevs = got.flatMap((r) => r.events).filter((e) => e.kv.key.toString() === "w/a");
      assert.ok(prevs.every((e) => e.prevKv?.key.toString() === "w/a"));
    }, 4));

  it("a watch below the compaction is canceled with the compact revision", () =>
    withHarness(async ({ connected, put, apply }) => {
      for (let i = 0; i < 10; i++) await put("k", String(i));
      assert.equal((await apply({ compaction: { revision: 8, physical: false } })).status, "applied");
      const stream = new WatchStream(connected.watchable, { progressIntervalMs: 0 });
      stream.create(create({ key: Buffer.from("k"), startRevision: 3 }));
      stream.create(create({ key: Buffer.from("k"), startRevision: 8 }));
      await connected.watchable.syncOnce();
      const responses = drain(stream);
      assert.deepEqual(
        responses.map((r) => [r.watchId, r.created, r.canceled, r.compactRevision, r.events.length]),
        [
          [0, true, false, 0, 0],
          [1, true, false, 0, 0],
          [0, false, true, 8, 0],
          [1, false, false, 0, 4],
        ],
      );
    }));

  it("a lease revoke reaches watchers as one revision of DELETE events with prev_kv", () =>
    withHarness(async ({ connected, put, apply, leases }) => {
      assert.equal((await apply(leases.grantRequest(9n, 60))).status, "applied");
      await put("svc/a", "1", 9n);
      await put("svc/b", "1", 9n);
      const stream = new WatchStream(connected.watchable, { progressIntervalMs: 0 });
      stream.create(create({ key: Buffer.from("svc/"), rangeEnd: Buffer.from("svc0"), prevKv: true }));
      drain(stream);
      assert.equal((await apply(leases.revokeRequest(9n))).status, "applied");
      const [response, ...rest] = drain(stream);
      assert.deepEqual(rest, []);
      assert.deepEqual(
        response.events.map((e) => [e.type, e.kv.key.toString(), e.kv.modRevision, e.prevKv?.lease]),
        [
          [EventType.DELETE, "svc/a", response.revision, 9n],
          [EventType.DELETE, "svc/b", response.revision, 9n],
        ],
      );
    }));
});
