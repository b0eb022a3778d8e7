// The applier chain, as etcd's etcdserver/apply.go builds it: each link sees a batch of committed
// entries, may answer some of them itself, and hands the batch on to the next link; the last
// link is the MVCC backend, which applies the batch in one RocksDB write with the applied index.
//
//   (auth check, when it lands) -> quota -> backend
//
// A link works on whole batches (not one request at a time) because the backend's atomic unit
// is the batch. A link that refuses an entry (the auth check will: permission denied) passes it
// on with `request: undefined`, so its index is still applied in order, and puts its own failure
// in that entry's result. Links must be deterministic in what they apply: only an entry's
// answer may depend on local state (as etcd's quotaApplierV3's does), never the state it leaves.
import { EtcdError } from "@etcd-ts/api";
import type { ApplyEntry, ApplyResult, MvccRequest, MvccStore } from "../mvcc/mod.js";

/** A committed entry as the chain sees it. */
export interface ChainEntry extends ApplyEntry {
  /** What the quota counts for this entry (etcd's Quota.Available argument), if it writes. */
  quota?: MvccRequest | { leaseGrant: unknown } | undefined;
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

/** The chain a member runs, outermost link first. The auth issue wraps it in its check. */
export function applierChain(store: () => MvccStore): Applier {
  return new QuotaApplier(store, new BackendApplier(store));
}
