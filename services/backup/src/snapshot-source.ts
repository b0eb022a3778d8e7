// Where a backup comes from: Maintenance.Snapshot of a follower, so the leader keeps its disk and
// CPU for the cluster; the leader only when no follower answers.
import { etcdserverpb } from "@etcd-ts/api";
import { type TraceContext, withTraceparent } from "@etcd-ts/telemetry";
import { Metadata } from "@grpc/grpc-js";
import { SnapshotSourceError } from "./backup-catalog.js";
import { encodeEvent } from "./delta-events.js";
import type { LeaseState } from "./delta-state.js";
import { MemberAccess } from "./member-access.js";
import { BackupError } from "./object-store.js";

export interface MemberStatus {
  endpoint: string;
  /** undefined: the member did not answer. */
  memberId?: string;
  /** The member's cluster, in hex as the control plane's subjects name it. */
  clusterId?: string;
  leaderId?: string;
  isLearner?: boolean;
  /** The member's current revision (its applied state). */
  revision?: number;
}

/**
 * A healthy voting follower if there is one, else the leader (learners refuse Maintenance.Snapshot).
 * Members in `avoid` (they failed a moment ago) are chosen only when no other member is healthy.
 */
export function pickSource(
  statuses: readonly MemberStatus[],
  avoid: ReadonlySet<string> = new Set(),
): MemberStatus | undefined {
  const healthy = statuses.filter(
    (s) => s.memberId !== undefined && s.leaderId !== undefined && s.leaderId !== "0" && !s.isLearner,
  );
  const pick = (among: MemberStatus[]) =>
    among.find((s) => s.memberId !== s.leaderId) ?? among.find((s) => s.memberId === s.leaderId);
  return pick(healthy.filter((s) => !avoid.has(s.endpoint))) ?? pick(healthy);
}

const CHANNEL = { "grpc.max_receive_message_length": 64 * 1024 * 1024 };

function client(endpoint: string, access: MemberAccess): etcdserverpb.MaintenanceClient {
  return new etcdserverpb.MaintenanceClient(access.address(endpoint), access.channel, CHANNEL);
}

export async function memberStatus(
  endpoint: string,
  access = MemberAccess.plaintext,
  timeoutMs = 3000,
): Promise<MemberStatus> {
  const c = client(endpoint, access);
  try {
    // Status needs no user (as in etcd): no token is asked for here.
    const res = await new Promise<etcdserverpb.StatusResponse>((resolve, reject) =>
      c.status({}, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, r) =>
        err ? reject(err) : resolve(r),
      ),
    );
    return {
      endpoint,
      memberId: String(res.header?.memberId ?? ""),
      clusterId: (res.header?.clusterId ?? 0n).toString(16),
      leaderId: String(res.leader),
      isLearner: res.isLearner,
      revision: Number(res.header?.revision ?? 0),
    };
  } catch {
    return { endpoint };
  } finally {
    c.close();
  }
}

/** The revisions a delta starts from were compacted away: only a full backup can go on from here. */
export class CompactedAwayError extends BackupError {
  constructor(
    readonly from: number,
    readonly compactRevision: number,
  ) {
    super(`revision ${from} is compacted (compact revision ${compactRevision}): take a full backup`);
  }
}

/** The snapshot stream of `endpoint`, message by message; `trace`: the backup's span context. */
export async function* snapshotStream(
  endpoint: string,
  trace?: TraceContext,
  access = MemberAccess.plaintext,
): AsyncGenerator<{ blob: Buffer; remaining: number }> {
  const c = client(endpoint, access);
  const call = c.snapshot({}, await access.metadata(endpoint, withTraceparent(new Metadata(), trace)));
  try {
    for await (const message of call as AsyncIterable<etcdserverpb.SnapshotResponse>) {
      yield { blob: Buffer.from(message.blob), remaining: Number(message.remainingBytes) };
    }
  } catch (err) {
    throw access.refused(endpoint, err);
  } finally {
    call.cancel();
    c.close();
  }
}

/**
 * Every event of revisions from..to on `endpoint` (a watch of the whole keyspace with prev_kv), as
 * delta lines. Fails when `from` is compacted away, or when no event arrives for `idleMs`.
 */
export async function* watchEvents(
  endpoint: string,
  from: number,
  to: number,
  options: { idleMs?: number; access?: MemberAccess } = {},
): AsyncGenerator<Buffer> {
  const { idleMs = 30_000, access = MemberAccess.plaintext } = options;
  const c = new etcdserverpb.WatchClient(access.address(endpoint), access.channel, CHANNEL);
  const call = c.watch(await access.metadata(endpoint));
  let idle = false;
  let timer = setTimeout(() => {}, 0);
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      idle = true;
      call.cancel();
    }, idleMs);
  };
  try {
    arm();
    call.write(
      etcdserverpb.WatchRequest.fromPartial({
        createRequest: {
          key: Buffer.from([0]),
          rangeEnd: Buffer.from([0]),
          startRevision: BigInt(from),
          prevKv: true,
          fragment: true,
        },
      }),
    );
    for await (const res of call as AsyncIterable<etcdserverpb.WatchResponse>) {
      arm();
      if (res.compactRevision > 0n) throw new CompactedAwayError(from, Number(res.compactRevision));
      if (res.canceled) throw new BackupError(`watch from revision ${from} canceled: ${res.cancelReason}`);
      let last = 0;
      for (const e of res.events) {
        last = Number(e.kv?.modRevision ?? 0);
        if (last > to) return;
        yield Buffer.from(encodeEvent(e));
      }
      // A revision's events come in one response (or its fragments), so the last one is whole.
      if (last === to && !res.fragment) return;
    }
    throw new BackupError(`watch from revision ${from} ended before revision ${to}`);
  } catch (err) {
    if (idle)
      throw new BackupError(`watch from revision ${from}: no event for ${idleMs} ms before revision ${to}`);
    throw access.refused(endpoint, err);
  } finally {
    clearTimeout(timer);
    call.cancel();
    c.close();
  }
}

/** What a delta's state needs from a member, read through its API (delta-state.ts). */
export interface LeaseAndAuthStatus {
  /** The member's revision when the lease list was read. */
  revision: number;
  leases: LeaseState[];
  /** undefined: the member has no AuthStatus (etcd 3.4). */
  auth?: { revision: number; enabled: boolean };
}

const UNARY_DEADLINE_MS = 10_000;
const TIME_TO_LIVE_IN_FLIGHT = 16;

/**
 * Every lease of `endpoint` with its granted TTL, and its auth revision. Every lease costs a
 * TimeToLive each time: a client may revoke a lease and grant its ID again with another TTL, which
 * neither the lease list nor the watch shows. A lease revoked between the list and its TimeToLive
 * is left out (it is gone). Failures are the member's (SnapshotSourceError, another member may
 * do), refusals final (MemberAccess.refused).
 */
export async function leaseAndAuthStatus(
  endpoint: string,
  access = MemberAccess.plaintext,
): Promise<LeaseAndAuthStatus> {
  const address = access.address(endpoint);
  const lease = new etcdserverpb.LeaseClient(address, access.channel, CHANNEL);
  const auth = new etcdserverpb.AuthClient(address, access.channel, CHANNEL);
  const call = async <T>(
    what: string,
    invoke: (md: Metadata, options: { deadline: number }, done: (err: Error | null, r: T) => void) => void,
  ): Promise<T> => {
    const md = await access.metadata(endpoint);
    return new Promise<T>((resolve, reject) =>
      invoke(md, { deadline: Date.now() + UNARY_DEADLINE_MS }, (err, r) => {
        if (err === null) return resolve(r);
        const refused = access.refused(endpoint, err);
        reject(refused === err ? new SnapshotSourceError(`${what} on ${endpoint}: ${err.message}`) : refused);
      }),
    );
  };
  try {
    const list = await call<etcdserverpb.LeaseLeasesResponse>("LeaseLeases", (md, o, done) =>
      lease.leaseLeases({}, md, o, done),
    );
    const leases: LeaseState[] = [];
    const ids = list.leases.map((l) => l.ID);
    for (let i = 0; i < ids.length; i += TIME_TO_LIVE_IN_FLIGHT) {
      const batch = await Promise.all(
        ids
          .slice(i, i + TIME_TO_LIVE_IN_FLIGHT)
          .map((ID) =>
            call<etcdserverpb.LeaseTimeToLiveResponse>("LeaseTimeToLive", (md, o, done) =>
              lease.leaseTimeToLive({ ID, keys: false }, md, o, done),
            ),
          ),
      );
      for (const t of batch) if (t.TTL >= 0n) leases.push({ id: t.ID, ttl: Number(t.grantedTTL) });
    }
    let authStatus: LeaseAndAuthStatus["auth"];
    try {
      const a = await call<etcdserverpb.AuthStatusResponse>("AuthStatus", (md, o, done) =>
        auth.authStatus({}, md, o, done),
      );
      // etcd's auth store starts at revision 1 (a snapshot says 1); a member of ours that never
      // changed auth answers 0. The same state, so compared as 1.
      authStatus = { revision: Math.max(1, Number(a.authRevision)), enabled: a.enabled };
    } catch (err) {
      // etcd 3.4 has no AuthStatus: its deltas carry leases only.
      if (!/UNIMPLEMENTED/.test((err as Error).message)) throw err;
    }
    return {
      revision: Number(list.header?.revision ?? 0),
      leases,
      ...(authStatus === undefined ? {} : { auth: authStatus }),
    };
  } finally {
    lease.close();
    auth.close();
  }
}
