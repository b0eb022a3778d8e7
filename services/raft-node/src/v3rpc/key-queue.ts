// etcd's concurrency recipes (client/v3/concurrency: Mutex, Election) run inside the member, as
// etcd's v3lock and v3election services run them: contenders queue under a prefix by creating
// `<prefix><lease in hex>` with their lease; the owner is the key with the lowest create
// revision; each contender waits for the deletion of the key just ahead of it.
import { EtcdError, etcdserverpb } from "@etcd-ts/api";
import type { AuthInfo } from "../auth/mod.js";
import { type RangeResponse, rangeRequestFromApi, type TxnResponse, txnRequestFromApi } from "../mvcc/mod.js";
import type { EtcdServer } from "../server/mod.js";
import { WatchStream } from "../watch/mod.js";

/** The server as one caller's recipe sees it: its writes carry the caller, its reads are checked. */
export type KeyQueueServer = Pick<
  EtcdServer,
  "txn" | "deleteRange" | "range" | "linearizableRead" | "quotaAvailable" | "raiseNoSpace" | "watchable"
>;

/**
 * etcd runs these recipes with the caller's context (clientv3 in v3lock/v3election), so every
 * write is checked at apply as the caller's and every read against the caller's permission.
 */
export function onBehalfOf(member: EtcdServer, caller: AuthInfo | undefined): KeyQueueServer {
  return {
    txn: (request, raw) => member.txn(request, raw, caller),
    deleteRange: (request) => member.deleteRange(request, undefined, caller),
    range: async (request) => {
      member.isRangePermitted(caller, request.key, request.rangeEnd);
      return member.range(request);
    },
    linearizableRead: () => member.linearizableRead(),
    quotaAvailable: (request) => member.quotaAvailable(request),
    raiseNoSpace: () => member.raiseNoSpace(),
    watchable: member.watchable,
  };
}

const COMPARE_CREATE = etcdserverpb.Compare_CompareTarget.CREATE;
const SORT_BY_CREATE = etcdserverpb.RangeRequest_SortTarget.CREATE;
const DESCEND = 2;
const ASCEND = 1;

export interface QueuedKey {
  key: Buffer;
  /** The key's create revision: its place in the queue. */
  rev: number;
  /** The value it held already when the key existed before (a re-campaign). */
  existingValue?: Buffer | undefined;
  revision: number;
}

/** concurrency's defaultSessionTTL. */
const SESSION_TTL_SECONDS = 60;

/**
 * The lease a Lock or Campaign call holds its key with. etcd's v3lock/v3election open a
 * concurrency session with the request's lease; without one (0) the session grants a fresh
 * 60 s lease, and the session is orphaned (never kept alive), so the key goes away in a
 * minute unless the caller keeps that lease alive.
 */
export async function sessionLease(member: EtcdServer, lease: bigint): Promise<bigint> {
  if (lease !== 0n) return lease;
  const grant = { ID: member.nextLeaseId(), TTL: SESSION_TTL_SECONDS };
  if (!member.quotaAvailable({ leaseGrant: grant })) {
    member.raiseNoSpace();
    throw new EtcdError("NoSpace");
  }
  return (await member.leaseGrant(grant)).id;
}

export function queueKey(prefix: Buffer, lease: bigint): Buffer {
  return Buffer.concat([prefix, Buffer.from(lease.toString(16))]);
}

export async function proposeTxn(
  member: KeyQueueServer,
  request: etcdserverpb.TxnRequest,
): Promise<TxnResponse> {
  const txn = txnRequestFromApi(request);
  if (!member.quotaAvailable({ txn })) {
    member.raiseNoSpace();
    throw new EtcdError("NoSpace");
  }
  return member.txn(txn, etcdserverpb.TxnRequest.encode(request).finish());
}

/** Creates the contender's key unless it exists (then reads it): Mutex.tryAcquire's txn. */
export async function enqueue(
  member: KeyQueueServer,
  key: Buffer,
  lease: bigint,
  value: Buffer,
): Promise<QueuedKey> {
  const txn = etcdserverpb.TxnRequest.fromPartial({
    compare: [{ key, target: COMPARE_CREATE, result: 0, createRevision: 0n }],
    success: [{ requestPut: { key, value, lease } }],
    failure: [{ requestRange: { key } }],
  });
  const res = await proposeTxn(member, txn);
  const revision = res.header!.revision;
  if (res.succeeded) return { key, rev: revision, revision };
  const kv = res.responses[0]?.responseRange?.kvs[0];
  if (kv === undefined) throw new Error("concurrency: the queued key vanished");
  return { key, rev: kv.createRevision, existingValue: kv.value, revision };
}

/** The current owner under `prefix`: the key with the lowest create revision. */
export async function owner(member: KeyQueueServer, prefix: Buffer): Promise<RangeResponse> {
  await member.linearizableRead();
  return member.range(
    rangeRequestFromApi(
      etcdserverpb.RangeRequest.fromPartial({
        key: prefix,
        rangeEnd: prefixEnd(prefix),
        sortTarget: SORT_BY_CREATE,
        sortOrder: ASCEND,
        limit: 1n,
      }),
    ),
  );
}

/** Resolves once every key under `prefix` created before `rev` is gone (waitDeletes). */
export async function waitForTurn(
  member: KeyQueueServer,
  prefix: Buffer,
  rev: number,
  signal: AbortSignal,
): Promise<void> {
  for (;;) {
    if (signal.aborted) throw new Error("context canceled");
    await member.linearizableRead();
    const ahead = await member.range(
      rangeRequestFromApi(
        etcdserverpb.RangeRequest.fromPartial({
          key: prefix,
          rangeEnd: prefixEnd(prefix),
          sortTarget: SORT_BY_CREATE,
          sortOrder: DESCEND,
          maxCreateRevision: BigInt(rev - 1),
          limit: 1n,
        }),
      ),
    );
    const last = ahead.kvs[0];
    if (last === undefined) return;
    await waitDeleted(member, last.key, ahead.header!.revision + 1, signal);
  }
}

/** Resolves at the first DELETE of `key` at or after `fromRevision`. */
export async function waitDeleted(
  member: KeyQueueServer,
  key: Buffer,
  fromRevision: number,
  signal: AbortSignal,
): Promise<void> {
  await waitEvent(member, key, Buffer.alloc(0), fromRevision, signal, (type) => type === 1);
}

/** Resolves at the first event in [key, rangeEnd) at or after `fromRevision` that `accept` takes. */
export async function waitEvent(
  member: KeyQueueServer,
  key: Buffer,
  rangeEnd: Buffer,
  fromRevision: number,
  signal: AbortSignal,
  accept: (eventType: number) => boolean,
): Promise<void> {
  const stream = new WatchStream(member.watchable, { progressIntervalMs: 0 });
  const onAbort = () => stream.close();
  signal.addEventListener("abort", onAbort);
  try {
    stream.create({
      key,
      rangeEnd,
      startRevision: fromRevision,
      progressNotify: false,
      filters: [],
      prevKv: false,
      watchId: 0,
      fragment: false,
    });
    for await (const response of stream) {
      if (response.canceled) throw new Error(response.cancelReason || "watch canceled");
      if (response.events.some((e) => accept(e.type))) return;
    }
    throw new Error("context canceled");
  } finally {
    signal.removeEventListener("abort", onAbort);
    stream.close();
  }
}

export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
