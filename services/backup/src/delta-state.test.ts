import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mvccpb } from "@etcd-ts/api";
import { decodeLeaseRecord, encodeLeaseRecord } from "@etcd-ts/raft-node";
import { encodeEvent } from "./delta-events.js";
import {
  type AuthBuckets,
  type DeltaState,
  decodeState,
  encodeState,
  leaseRowsWithTtls,
  sameState,
  stateAt,
} from "./delta-state.js";
import { BackupError } from "./object-store.js";

const buckets = (user: string): AuthBuckets => ({
  auth: [{ key: Buffer.from("authRevision"), value: Buffer.from([0, 0, 0, 0, 0, 0, 0, 5]) }],
  authUsers: [{ key: Buffer.from(user), value: Buffer.from([0xff, 0, 1]) }],
  authRoles: [],
});

describe("delta states", () => {
  it("round-trip: lease IDs as int64 (negative too), TTLs, auth revision, switch and buckets", () => {
    const state: DeltaState = {
      revision: 42,
      leases: [
        { id: 7587862072891391490n, ttl: 600 },
        { id: -2n, ttl: 5 },
      ],
      auth: { revision: 5, enabled: true, buckets: buckets("bob") },
    };
    const line = encodeState(state);
    assert.ok(line.endsWith("\n") && !line.slice(0, -1).includes("\n"));
    assert.deepEqual(decodeState(line.trimEnd()), state);
    const bare: DeltaState = { revision: 3, leases: [] };
    assert.deepEqual(decodeState(encodeState(bare).trimEnd()), bare);
  });

  it("an event line is not a state; a malformed state line is refused", () => {
    const event = encodeEvent(
      mvccpb.Event.fromPartial({
        kv: {
          key: Buffer.from("k"),
          value: Buffer.from("v"),
          modRevision: 4n,
          createRevision: 4n,
          version: 1n,
        },
      }),
    );
    assert.equal(decodeState(event.trimEnd()), undefined);
    for (const bad of [
      '{"state":{"rev":-1,"leases":[]}}',
      '{"state":{"rev":1,"leases":[{"id":"x","ttl":5}]}}',
      '{"state":{"rev":1}}',
      '{"state":{"rev":1,"leases":[],"auth":{"revision":2}}}',
      '{"state":',
    ])
      assert.throws(() => decodeState(bad), BackupError, bad);
  });

  it("sameState compares leases with their TTLs and the auth revision and switch", () => {
    const a: DeltaState = {
      revision: 1,
      leases: [{ id: 1n, ttl: 5 }],
      auth: { revision: 1, enabled: false },
    };
    assert.ok(sameState(a, { ...a, revision: 9 }));
    assert.ok(!sameState(a, { ...a, leases: [{ id: 1n, ttl: 6 }] }));
    assert.ok(!sameState(a, { ...a, leases: [] }));
    assert.ok(!sameState(a, { ...a, auth: { revision: 2, enabled: false } }));
    assert.ok(!sameState(a, { ...a, auth: { revision: 1, enabled: true } }));
  });

  it("stateAt: the state read at the end of the delta holding the target, its auth buckets, every TTL", () => {
    const full: DeltaState = {
      revision: 10,
      leases: [{ id: 1n, ttl: 60 }],
      auth: { revision: 1, enabled: false, buckets: buckets("alice") },
    };
    const first: DeltaState = {
      revision: 20,
      leases: [
        { id: 1n, ttl: 60 },
        { id: 2n, ttl: 70 },
      ],
      auth: { revision: 3, enabled: false, buckets: buckets("bob") },
    };
    // Leases changed with no key: a state alone at the same revision, auth unchanged (no buckets).
    const stateOnly: DeltaState = {
      revision: 20,
      leases: [...first.leases, { id: 3n, ttl: 80 }],
      auth: { revision: 3, enabled: false },
    };
    const second: DeltaState = {
      revision: 30,
      leases: [{ id: 4n, ttl: 90 }],
      auth: { revision: 3, enabled: false },
    };
    const states = [full, first, stateOnly, second];
    // At the full backup's revision: its own state.
    assert.equal(stateAt(states, 10).state, full);
    assert.equal(stateAt(states, 10).authBuckets, full.auth!.buckets);
    // Inside the first delta, and at its end: the newest state read at revision 20 (the state-only one).
    for (const target of [11, 19, 20]) {
      const at = stateAt(states, target);
      assert.deepEqual(
        at.state.leases.map((l) => l.id),
        [1n, 2n, 3n],
      );
      assert.equal(at.authBuckets, first.auth!.buckets, "auth buckets carried from the delta that had them");
    }
    const late = stateAt(states, 25);
    assert.equal(late.state, second);
    assert.equal(late.authBuckets, first.auth!.buckets);
    // A TTL is known from any state, before or after the target.
    assert.deepEqual(
      [...stateAt(states, 11).ttls],
      [
        [1n, 60],
        [2n, 70],
        [3n, 80],
        [4n, 90],
      ],
    );
    // Deltas without states (taken before deltas had them): the newest state before the target.
    assert.equal(stateAt([full], 15).state, full);
    assert.throws(() => stateAt([], 15), /no lease and auth state at or before revision 15/);
  });
});

describe("lease TTLs of a point-in-time restore", () => {
  const row = (id: bigint, ttl: number, remainingTtl = 0) => ({
    key: Buffer.from(id.toString(16).padStart(16, "0"), "hex"),
    value: encodeLeaseRecord({ id, ttl, remainingTtl }),
  });
  it("gives each lease the state names the TTL it recorded, and leaves the others as they are", () => {
    const rows = [row(1n, 100, 40), row(2n, 60, 10), row(3n, 5)];
    const state: DeltaState = {
      revision: 9,
      leases: [
        { id: 1n, ttl: 300 },
        { id: 2n, ttl: 60 },
      ],
    };
    const out = leaseRowsWithTtls(rows, state)!;
    assert.deepEqual(
      out.map((r) => decodeLeaseRecord(r.value)),
      [
        { id: 1n, ttl: 300, remainingTtl: 0 },
        { id: 2n, ttl: 60, remainingTtl: 10 },
        { id: 3n, ttl: 5, remainingTtl: 0 },
      ],
    );
    assert.deepEqual(
      out.map((r) => r.key),
      rows.map((r) => r.key),
    );
  });
  it("is undefined when every TTL is already the state's", () => {
    assert.equal(
      leaseRowsWithTtls([row(1n, 100)], { revision: 9, leases: [{ id: 1n, ttl: 100 }] }),
      undefined,
    );
    assert.equal(leaseRowsWithTtls([], { revision: 9, leases: [{ id: 1n, ttl: 100 }] }), undefined);
  });
});
