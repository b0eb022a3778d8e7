// What a watch does not show: leases (grants, revokes, TTLs) and the auth store (users, roles,
// permissions, auth on or off) change without a revision of the key space. Each delta therefore
// starts with one line of the cluster's lease and auth state, read from the member before the
// delta's events, at the revision the delta ends at ("rev"; a change made while it was being
// read may be in it too):
//   {"state":{"rev":42,"leases":[{"id":"7587...","ttl":600}],
//             "auth":{"revision":7,"enabled":true,"buckets":{"auth":[["<b64>","<b64>"]],...}}}}
// "buckets" (etcd's auth, authUsers and authRoles buckets, password hashes included: the API
// cannot set those, so they are copied from a snapshot) is present only when the auth revision
// differs from the previous state's; "auth" is absent when the member has no AuthStatus (etcd 3.4).
// A delta whose range is empty (from = to + 1) carries only a state: leases or auth changed while
// the key space did not.
import {
  BUCKETS,
  decodeLeaseRecord,
  encodeLeaseRecord,
  type OpenedSnapshot,
  type SnapshotRow,
} from "@etcd-ts/raft-node";
import { BackupError } from "./object-store.js";

export interface LeaseState {
  id: bigint;
  /**
   * The TTL it was granted with: what etcd keeps in a snapshot (a restored lease's clock restarts
   * from it), and constant for the lease's life, so each lease's is asked for once.
   */
  ttl: number;
}

export const AUTH_BUCKETS = [BUCKETS.auth, BUCKETS.authUsers, BUCKETS.authRoles] as const;
export type AuthBuckets = Record<(typeof AUTH_BUCKETS)[number], SnapshotRow[]>;

export interface AuthState {
  revision: number;
  enabled: boolean;
  /** etcd's three auth buckets; absent when unchanged since the previous state. */
  buckets?: AuthBuckets;
}

export interface DeltaState {
  /** The key space's revision when the state was read. */
  revision: number;
  leases: LeaseState[];
  /** undefined: the member does not tell its auth revision (etcd 3.4 has no AuthStatus). */
  auth?: AuthState;
}

const AUTH_REVISION = Buffer.from("authRevision");
const AUTH_ENABLED = Buffer.from("authEnabled");

export function encodeState(state: DeltaState): string {
  const auth =
    state.auth === undefined
      ? undefined
      : {
          revision: state.auth.revision,
          enabled: state.auth.enabled,
          ...(state.auth.buckets === undefined
            ? {}
            : {
                buckets: Object.fromEntries(
                  AUTH_BUCKETS.map((name) => [
                    name,
                    state.auth!.buckets![name].map((r) => [
                      r.key.toString("base64"),
                      r.value.toString("base64"),
                    ]),
                  ]),
                ),
              }),
        };
  return `${JSON.stringify({
    state: {
      rev: state.revision,
      leases: state.leases.map((l) => ({ id: l.id.toString(), ttl: l.ttl })),
      ...(auth === undefined ? {} : { auth }),
    },
  })}\n`;
}

/** The state of a delta's first line, or undefined when the line is an event (deltas taken before states). */
export function decodeState(line: string): DeltaState | undefined {
  if (!line.startsWith('{"state"')) return undefined;
  const bad = (what: string) => new BackupError(`delta state line has a bad ${what}: ${line.slice(0, 80)}`);
  let o: { state?: Record<string, unknown> };
  try {
    o = JSON.parse(line) as { state?: Record<string, unknown> };
  } catch {
    throw bad("JSON");
  }
  const s = o.state;
  if (typeof s !== "object" || s === null) throw bad("state");
  const int = (v: unknown, what: string, min = 0) => {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) throw bad(what);
    return v;
  };
  if (!Array.isArray(s.leases)) throw bad('"leases"');
  const leases = (s.leases as Record<string, unknown>[]).map((l) => {
    if (typeof l?.id !== "string" || !/^-?\d+$/.test(l.id)) throw bad("lease id");
    return { id: BigInt(l.id), ttl: int(l.ttl, "lease ttl") };
  });
  const state: DeltaState = { revision: int(s.rev, '"rev"'), leases };
  const a = s.auth as Record<string, unknown> | undefined;
  if (a !== undefined) {
    if (typeof a.enabled !== "boolean") throw bad("auth.enabled");
    state.auth = { revision: int(a.revision, "auth.revision"), enabled: a.enabled };
    const b = a.buckets as Record<string, unknown> | undefined;
    if (b !== undefined) {
      const rows = (name: string): SnapshotRow[] => {
        const list = b[name];
        if (!Array.isArray(list)) throw bad(`auth bucket ${name}`);
        return list.map((pair: unknown) => {
          if (!Array.isArray(pair) || typeof pair[0] !== "string" || typeof pair[1] !== "string")
            throw bad(`row of ${name}`);
          return { key: Buffer.from(pair[0], "base64"), value: Buffer.from(pair[1], "base64") };
        });
      };
      state.auth.buckets = {
        [BUCKETS.auth]: rows(BUCKETS.auth),
        [BUCKETS.authUsers]: rows(BUCKETS.authUsers),
        [BUCKETS.authRoles]: rows(BUCKETS.authRoles),
      } as AuthBuckets;
    }
  }
  return state;
}

/** etcd's three auth buckets of a snapshot, with the revision and switch they hold. */
export function authOfSnapshot(snapshot: OpenedSnapshot): Required<AuthState> {
  const { reader } = snapshot;
  const rowsOf = (name: string): SnapshotRow[] => {
    const root = reader.bucket(name);
    if (root === undefined) return [];
    return [...reader.rows(root)].map((r) => ({ key: Buffer.from(r.key), value: Buffer.from(r.value) }));
  };
  const buckets = {
    [BUCKETS.auth]: rowsOf(BUCKETS.auth),
    [BUCKETS.authUsers]: rowsOf(BUCKETS.authUsers),
    [BUCKETS.authRoles]: rowsOf(BUCKETS.authRoles),
  } as AuthBuckets;
  const revisionRow = buckets.auth.find((r) => r.key.equals(AUTH_REVISION));
  const enabledRow = buckets.auth.find((r) => r.key.equals(AUTH_ENABLED));
  return {
    // etcd's initial auth revision is 1 when the bucket has none yet.
    revision: revisionRow === undefined ? 1 : Number(revisionRow.value.readBigUInt64BE(0)),
    enabled: enabledRow?.value[0] === 1,
    buckets,
  };
}

/** The state a full backup holds: its leases (with their TTLs) and its auth store. */
export function stateOfSnapshot(snapshot: OpenedSnapshot, revision: number): DeltaState {
  const root = snapshot.reader.bucket(BUCKETS.lease);
  const leases: LeaseState[] = [];
  if (root !== undefined)
    for (const row of snapshot.reader.rows(root)) {
      const record = decodeLeaseRecord(row.value);
      leases.push({ id: record.id, ttl: record.ttl });
    }
  return { revision, leases, auth: authOfSnapshot(snapshot) };
}

/** Whether two states differ in what a restore brings back: the leases and their TTLs, or the auth store. */
export function sameState(a: DeltaState, b: DeltaState): boolean {
  const leases = (s: DeltaState) =>
    s.leases
      .map((l) => `${l.id}:${l.ttl}`)
      .sort()
      .join(",");
  return (
    leases(a) === leases(b) && a.auth?.revision === b.auth?.revision && a.auth?.enabled === b.auth?.enabled
  );
}

export interface StateAt {
  /** The state a restore to the target gets. */
  state: DeltaState;
  /** The auth buckets in force at that state (the newest ones given up to it), if the chain knows them. */
  authBuckets: AuthBuckets | undefined;
  /** Granted TTL of every lease any state names (a lease's TTL never changes in its life). */
  ttls: Map<bigint, number>;
}

/**
 * Which lease and auth state a restore to `target` gets, from the full backup's state and the
 * deltas' in order. A lease or auth change has no revision: one made between two states is known
 * only from the later one. So a target inside a delta gets the state read at that delta's end
 * (the newest one read at that revision): a grant, user or role acknowledged before the target
 * is kept unless it was undone before the delta was taken, and one made after the target but
 * before the delta's end is included. States older than the chain's (deltas without one) fall
 * back to the newest state before the target.
 */
export function stateAt(states: readonly DeltaState[], target: number): StateAt {
  const ttls = new Map<bigint, number>();
  for (const s of states) for (const l of s.leases) ttls.set(l.id, l.ttl);
  const after = states.filter((s) => s.revision >= target);
  const end = after.length > 0 ? Math.min(...after.map((s) => s.revision)) : undefined;
  let chosen: DeltaState | undefined;
  let authBuckets: AuthBuckets | undefined;
  for (const s of states) {
    if (end === undefined ? s.revision > target : s.revision > end) break;
    chosen = s;
    if (s.auth?.buckets !== undefined) authBuckets = s.auth.buckets;
  }
  if (chosen === undefined) throw new BackupError(`no lease and auth state at or before revision ${target}`);
  return { state: chosen, authBuckets, ttls };
}

/**
 * A snapshot's lease bucket with the TTL `state` recorded for each lease it names, or undefined
 * when every one has it already. A point-in-time replay cannot give a lease that is alive (from
 * the full backup, or granted for an earlier put) another TTL through the API: a client that
 * revoked an ID and granted it again with another TTL did that with a revoke, whose deletes the
 * replay already made at their own revisions, and one more revoke would delete keys again. So
 * the TTL goes into the file, as the auth store does.
 */
export function leaseRowsWithTtls(
  rows: readonly SnapshotRow[],
  state: DeltaState,
): SnapshotRow[] | undefined {
  const ttls = new Map(state.leases.map((l) => [l.id, l.ttl]));
  let changed = false;
  const out = rows.map((row) => {
    const record = decodeLeaseRecord(row.value);
    const ttl = ttls.get(record.id);
    if (ttl === undefined || ttl === record.ttl) return row;
    changed = true;
    // No remaining TTL: a restored lease's clock starts from its TTL (etcd's own restore).
    return { key: row.key, value: encodeLeaseRecord({ id: record.id, ttl, remainingTtl: 0 }) };
  });
  return changed ? out : undefined;
}
