import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { backupId, backupTime, beyondRetention, isoWeek } from "./retention.js";
import { backoffDelay, withRetries } from "./retry.js";

const at = (iso: string) => backupId(new Date(iso));

describe("retention", () => {
  it("ids name their UTC time and sort in time order", () => {
    const ids = [new Date("2026-12-04T09:59:59.999Z"), new Date("2026-12-04T10:00:00.000Z")].map(backupId);
    assert.deepEqual([...ids].sort(), ids);
    assert.match(ids[0]!, /^[A-Za-z0-9_-]+$/);
    assert.equal(backupTime(ids[0]!).toISOString(), "2026-12-04T09:59:59.999Z");
    assert.throws(() => backupTime("by-hand"), /does not name a UTC time/);
  });

  it("keeps the last N", () => {
    const ids = ["a", "b", "c", "d"].map((_, i) => at(`2026-12-04T0${i}:00:00Z`));
    assert.deepEqual(beyondRetention(ids, { keepLast: 2 }), ids.slice(0, 2));
    assert.deepEqual(beyondRetention(ids.slice(0, 1), { keepLast: 3 }), []);
    assert.deepEqual(beyondRetention(ids, {}), [], "no rule: keep everything");
    assert.throws(() => beyondRetention([], { keepLast: 0 }), /--keep-last must be at least 1/);
    assert.throws(() => beyondRetention([], { keepDaily: 1.5 }), /--keep-daily must be at least 1/);
  });

  it("keeps the newest of each recent day and ISO week, beside the last N", () => {
    // Hourly backups for 20 days ending on Friday 2026-12-04 (ISO week 49).
    const ids: string[] = [];
    for (let h = 0; h < 20 * 24; h++) ids.push(backupId(new Date(Date.UTC(2026, 10, 15, h))));
    const kept = (policy: Parameters<typeof beyondRetention>[1]) => {
      const gone = new Set(beyondRetention(ids, policy));
      return ids.filter((id) => !gone.has(id));
    };
    assert.deepEqual(kept({ keepDaily: 3 }), [
      at("2026-12-02T23:00:00Z"),
      at("2026-12-03T23:00:00Z"),
      at("2026-12-04T23:00:00Z"),
    ]);
    // Weeks 47 (ends Sun 11-22), 48 (ends Sun 11-29), 49 (the newest).
    assert.deepEqual(kept({ keepWeekly: 3 }), [
      at("2026-11-22T23:00:00Z"),
      at("2026-11-29T23:00:00Z"),
      at("2026-12-04T23:00:00Z"),
    ]);
    assert.deepEqual(kept({ keepLast: 2, keepDaily: 2, keepWeekly: 2 }), [
      at("2026-11-29T23:00:00Z"),
      at("2026-12-03T23:00:00Z"),
      at("2026-12-04T22:00:00Z"),
      at("2026-12-04T23:00:00Z"),
    ]);
  });

  it("counts ISO weeks across a year's end", () => {
    assert.equal(isoWeek(new Date("2026-12-31T12:00:00Z")), "2026-W53");
    assert.equal(isoWeek(new Date("2027-01-03T12:00:00Z")), "2026-W53");
    assert.equal(isoWeek(new Date("2027-01-04T00:00:00Z")), "2027-W01");
    assert.equal(isoWeek(new Date("2024-12-30T00:00:00Z")), "2025-W01");
  });
});

describe("retries", () => {
  const options = { attempts: 4, baseDelayMs: 10, maxDelayMs: 40, retryable: (e: unknown) => e !== "final" };

  it("backs off exponentially up to the ceiling, with jitter below it", () => {
    const top = { ...options, random: () => 0.999 };
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((a) => backoffDelay(a, top)),
      [9, 19, 39, 39, 39],
    );
    assert.equal(backoffDelay(3, { ...options, random: () => 0 }), 0);
  });

  it("retries what is retryable, up to the attempts, and reports each retry", async () => {
    const seen: number[] = [];
    let calls = 0;
    const value = await withRetries(
      async () => {
        calls++;
        if (calls < 3) throw new Error(`try ${calls}`);
        return "done";
      },
      { ...options, onRetry: (_e, attempt) => seen.push(attempt) },
    );
    assert.equal(value, "done");
    assert.deepEqual(seen, [1, 2]);
    calls = 0;
    await assert.rejects(
      withRetries(async () => {
        calls++;
        throw new Error("always");
      }, options),
      /always/,
    );
    assert.equal(calls, 4);
    calls = 0;
    await assert.rejects(
      withRetries(async () => {
        calls++;
        throw "final";
      }, options),
    );
    assert.equal(calls, 1);
  });
});
