// The applier chain, as etcd's etcdserver/apply.go builds it: each link sees a batch of committed
// entries, may answer some of them itself, and hands the batch on to the next link; the last
// link is the MVCC backend, which applies the batch in one RocksDB write with the applied index.
//
//   auth -> quota -> backend
//
// A link works on whole batches (not one request at a time) because the backend's atomic unit
// is the batch. A link that refuses an entry (the auth check will: permission denied) passes it
// on with `request: undefined`, so its index is still applied in order, and puts its own failure
// in that entry's result. Links must be deterministic in what they apply: only an entry's
// answer may depend on local state (as etcd's quotaApplierV3's does), never the state it leaves.
import { EtcdError } from "@etcd-ts/api";
import type { AuthInfo, AuthStore } from "../auth/mod.js";
import type {
  ApplyEntry,
  ApplyResult,
  DeleteRangeRequest,
  MvccRequest,
  MvccStore,
  PutRequest,
  RequestOp,
  TxnRequest,
} from "../mvcc/mod.js";
import { EntryKind } from "./entry-envelope.js";

/** A committed entry as the chain sees it. */
export interface ChainEntry extends ApplyEntry {
  /** What the quota counts for this entry (etcd's Quota.Available argument), if it writes. */
  quota?: MvccRequest | { leaseGrant: unknown } | undefined;
  /** The envelope's kind, for the auth link; absent for conf changes and empty entries. */
  kind?: EntryKind | undefined;
  /** The caller the proposer authenticated (etcd's RequestHeader username/auth_revision). */
  caller?: AuthInfo | undefined;
  /** For LeaseRevoke: the lease revoked; for AuthUserGet/AuthRoleGet: the name asked about. */
  subject?: bigint | string | undefined;
}

export interface Applier {
  applyBatch(entries: readonly ChainEntry[]): Promise<ApplyResult[]>;
}

/** The end of the chain: etcd's applierV3backend, here the MVCC store's atomic batch apply. */
export class BackendApplier implements Applier {
  constructor(private readonly store: () => MvccStore) {}

  applyBatch(entries: readonly ChainEntry[]): Promise<ApplyResult[]> {
    return this.store().applyBatch(entries);
  }
}

/**
 * etcd's quotaApplierV3: a write that finds the quota exhausted when it is applied is still
 * applied (every member must leave the same state; backend sizes differ between members), but
 * its proposer is answered "database space exceeded". The NOSPACE alarm, once raised by the
 * RPC layer's check and applied, is what refuses writes on every member alike (the store's
 * capped apply).
 */
export class QuotaApplier implements Applier {
  constructor(
    private readonly store: () => MvccStore,
    private readonly next: Applier,
  ) {}

  async applyBatch(entries: readonly ChainEntry[]): Promise<ApplyResult[]> {
    const store = this.store();
    // Measured before the batch, as etcd asks Available() before applying each request.
    const over: boolean[] = entries.map((e) => e.quota !== undefined && !store.quotaAvailable(e.quota));
    const results = await this.next.applyBatch(entries);
    for (let i = 0; i < results.length; i++) {
      if (over[i] && results[i]!.status === "applied") {
        results[i] = { status: "failed", error: new EtcdError("NoSpace") };
      }
    }
    return results;
  }
}

/** etcd's needAdminPermission: the auth calls only root may make once auth is on. */
const ADMIN_KINDS: ReadonlySet<EntryKind> = new Set([
  EntryKind.AuthEnable,
  EntryKind.AuthDisable,
  EntryKind.AuthUserAdd,
  EntryKind.AuthUserDelete,
  EntryKind.AuthUserChangePassword,
  EntryKind.AuthUserGrantRole,
  EntryKind.AuthUserRevokeRole,
  EntryKind.AuthRoleAdd,
  EntryKind.AuthRoleGrantPermission,
  EntryKind.AuthRoleRevokePermission,
  EntryKind.AuthRoleDelete,
  EntryKind.AuthUserList,
  EntryKind.AuthRoleList,
]);

/**
 * etcd's authApplierV3: checks each entry's caller against the auth store as it stands when the
 * entry is applied (the check runs in the backend's batch, in order, just before the entry, so
 * an auth change earlier in the same batch is seen as etcd's one-at-a-time apply sees it). A
 * refused entry changes nothing; its proposer gets etcd's error. Every member refuses alike: the
 * check depends only on the entry and the replicated auth store.
 */
export class AuthApplier implements Applier {
  constructor(
    private readonly auth: () => AuthStore,
    /** The keys attached to a lease (as latin1 strings), for LeaseRevoke's check. */
    private readonly leaseKeys: (id: bigint) => Iterable<string>,
    private readonly next: Applier,
  ) {}

  applyBatch(entries: readonly ChainEntry[]): Promise<ApplyResult[]> {
    // check() refuses nothing while auth is off, and only an AuthEnable entry applied in this
    // batch can turn it on before a later entry's check: without one, the batch goes on as it
    // is (no per-entry copy and closure, the common case of every put while auth is off).
    if (!this.auth().enabled && !entries.some((e) => e.kind === EntryKind.AuthEnable)) {
      return this.next.applyBatch(entries);
    }
    const checked = entries.map((e) =>
      e.request === undefined || e.kind === undefined ? e : { ...e, check: () => this.check(e) },
    );
    return this.next.applyBatch(checked);
  }

  private check(e: ChainEntry): void {
    const auth = this.auth();
    if (!auth.enabled) return;
    const caller = e.caller;
    const request = e.request;
    if (request === undefined) return;
    switch (e.kind) {
      case EntryKind.Put: {
        const put = (request as { put: PutRequest }).put;
        auth.isPutPermitted(caller, put.key);
        if (put.lease !== 0n) this.checkLeasePuts(put.lease, caller);
        if (put.prevKv) auth.isRangePermitted(caller, put.key, Buffer.alloc(0));
        return;
      }
      case EntryKind.DeleteRange: {
        const del = (request as { deleteRange: DeleteRangeRequest }).deleteRange;
        auth.isDeleteRangePermitted(caller, del.key, del.rangeEnd);
        if (del.prevKv) auth.isRangePermitted(caller, del.key, del.rangeEnd);
        return;
      }
      case EntryKind.Txn:
        checkTxn(auth, caller, (request as { txn: TxnRequest }).txn);
        return;
      case EntryKind.LeaseRevoke:
        this.checkLeasePuts(e.subject as bigint, caller);
        return;
      case EntryKind.AuthUserGet:
        try {
          auth.isAdminPermitted(caller);
        } catch (err) {
          if (e.subject !== caller?.username) throw err;
        }
        return;
      case EntryKind.AuthRoleGet:
        try {
          auth.isAdminPermitted(caller);
        } catch (err) {
          if (caller === undefined || !auth.hasRole(caller.username, e.subject as string)) throw err;
        }
        return;
      default:
        if (e.kind !== undefined && ADMIN_KINDS.has(e.kind)) auth.isAdminPermitted(caller);
    }
  }

  /** A lease holding a key the caller may not write cannot be revoked (or given more keys) by it. */
  private checkLeasePuts(lease: bigint, caller: AuthInfo | undefined): void {
    const auth = this.auth();
    for (const key of this.leaseKeys(lease)) auth.isPutPermitted(caller, Buffer.from(key, "latin1"));
  }
}

function checkTxn(auth: AuthStore, caller: AuthInfo | undefined, txn: TxnRequest): void {
  for (const c of txn.compare) auth.isRangePermitted(caller, c.key, c.rangeEnd);
  checkTxnOps(auth, caller, txn.success);
  checkTxnOps(auth, caller, txn.failure);
}

function checkTxnOps(auth: AuthStore, caller: AuthInfo | undefined, ops: RequestOp[]): void {
  for (const op of ops) {
    if (op.requestRange !== undefined) {
      auth.isRangePermitted(caller, op.requestRange.key, op.requestRange.rangeEnd);
    } else if (op.requestPut !== undefined) {
      auth.isPutPermitted(caller, op.requestPut.key);
    } else if (op.requestDeleteRange !== undefined) {
      const del = op.requestDeleteRange;
      if (del.prevKv) auth.isRangePermitted(caller, del.key, del.rangeEnd);
      auth.isDeleteRangePermitted(caller, del.key, del.rangeEnd);
    } else if (op.requestTxn !== undefined) {
      // Nested txns (3.5's) are checked like the outer one.
      checkTxn(auth, caller, op.requestTxn);
    }
  }
}

/** The chain a member runs, outermost link first. */
export function applierChain(
  store: () => MvccStore,
  auth: () => AuthStore,
  leaseKeys: (id: bigint) => Iterable<string>,
): Applier {
  return new AuthApplier(auth, leaseKeys, new QuotaApplier(store, new BackendApplier(store)));
}
