// Leases as part of the replicated state machine: each lease request becomes an mvcc
// `external` request, so the lessor's change, the lease record in the "lease" column and (for a
// revoke) the deletion of every attached key land in the same RocksDB batch as the raft apply
// and its applied index. Nothing here reads a clock: expiry is the primary's business (see
// Lessor); what is applied and persisted depends only on the log.
import type { AppliedTxn, ExternalApply, MvccRequest, MvccStore } from "../mvcc/mod.js";
import {
  decodeLeaseRecord,
  encodeLeaseRecord,
  LEASE_COLUMN,
  leaseIdOfKey,
  leaseKey,
} from "./lease-record.js";
import { type LeaseCheckpoint, type LeaseId, type LeaseRecord, type Lessor, NO_LEASE } from "./lessor.js";

export interface LeaseGrantApplied {
  id: LeaseId;
  /** The TTL granted, after the minimum TTL was applied. */
  ttl: number;
}

export interface LeaseRevokeApplied {
  /** Keys deleted with the lease. */
  deleted: number;
  /** The store revision after the revoke (unchanged when the lease had no live keys). */
  revision: number;
}

/** mvcc's key index as far as leases are concerned: the truth the lessor's key sets follow. */
export interface LeasedKeyView {
  /** The lease of `key` if it is live, NO_LEASE otherwise. */
  leaseOfLiveKey(key: Buffer): LeaseId;
  /** Every live key with a lease (a full index scan). */
  leasedKeys(): Iterable<{ key: Buffer; lease: LeaseId }>;
  /** The store's current revision. */
  readonly revision: number;
}

export function leasedKeyView(store: MvccStore): LeasedKeyView {
  return {
    leaseOfLiveKey: (key) => {
      const entry = store.index.lookup(key.toString("latin1"));
      return entry?.isLive ? entry.lease : NO_LEASE;
    },
    leasedKeys: () => store.leasedKeys(),
    get revision() {
      return store.revision;
    },
  };
}

export class LeaseStateMachine {
  /**
   * The last write revision observe() has seen. mvcc reports writes once their batch is
   * durable, so within a batch the lessor's key sets may lag the index; a revoke checks this
   * to know whether they can be trusted.
   */
  private observedRevision: number;

  constructor(
    readonly lessor: Lessor,
    private readonly keyView: LeasedKeyView,
  ) {
    this.observedRevision = keyView.revision;
  }

  /** Applies LeaseGrant{ID, TTL}; fails the entry with LeaseExist/LeaseTTLTooLarge/LeaseNotFound. */
  grantRequest(id: LeaseId, ttlSeconds: number): MvccRequest {
    return {
      external: (context: ExternalApply): LeaseGrantApplied => {
        const lease = this.lessor.grant(id, ttlSeconds);
        this.persist(context, lease.record());
        return { id, ttl: lease.ttl };
      },
    };
  }

  /**
   * Applies LeaseRevoke{ID}: the lease record and every attached key go in one write txn (one
   * revision, etcd's lessor RangeDeleter), in the batch of the apply.
   */
  revokeRequest(id: LeaseId): MvccRequest {
    return {
      external: (context: ExternalApply): LeaseRevokeApplied => {
        const attached = this.lessor.revoke(id);
        context.del(LEASE_COLUMN, leaseKey(id));
        const { deleted, revision } = context.deleteKeys(this.keysToRevoke(id, attached, context.revision));
        return { deleted, revision };
      },
    };
  }

  /**
   * The keys a revoke must delete: those the index says are live and attached to the lease.
   * When every write so far has been observed, the lessor's set is current and is only
   * checked against the index. When earlier entries of the same batch wrote keys not yet
   * observed (a key attached to the lease, or moved off it), only a scan of the index is
   * exact; that costs O(keys) and is avoided by starting a new apply batch at each revoke.
   */
  private keysToRevoke(id: LeaseId, attached: Buffer[], revision: number): Buffer[] {
    if (revision === this.observedRevision) {
      return attached.filter((key) => this.keyView.leaseOfLiveKey(key) === id);
    }
    const keys: Buffer[] = [];
    for (const entry of this.keyView.leasedKeys()) if (entry.lease === id) keys.push(entry.key);
    return keys;
  }

  /** Applies LeaseCheckpoint entries; checkpoints of leases already gone are ignored, as in etcd. */
  checkpointRequest(checkpoints: readonly LeaseCheckpoint[]): MvccRequest {
    return {
      external: (context: ExternalApply): void => {
        for (const { id, remainingTtl } of checkpoints) {
          const lease = this.lessor.checkpoint(id, remainingTtl);
          if (lease !== undefined) this.persist(context, lease.record());
        }
      },
    };
  }

  /**
   * Keeps key attachments in step with applied writes; subscribe it to the mvcc store
   * (`store.subscribe((txn) => machine.observe(txn))`) before anything is applied.
   */
  observe(txn: AppliedTxn): void {
    this.observedRevision = txn.revision;
    for (const event of txn.events) {
      const kv = event.kv;
      if (kv === undefined) continue;
      if (event.type === 1) {
        this.lessor.keyDeleted(kv.key);
        continue;
      }
      // A lease revoked later in the same batch is gone already (its revoke found this key
      // by scanning the index).
      if (kv.lease !== NO_LEASE && this.lessor.lookup(kv.lease) === undefined) this.lessor.keyDeleted(kv.key);
      else this.lessor.keyWritten(kv.key, kv.lease);
    }
  }

  /**
   * Rebuilds the lessor at start-up from the lease column's rows and the leases recorded on
   * live keys in the index.
   */
  recover(leaseRows: Iterable<{ key: Buffer; value: Buffer }>): void {
    const records: LeaseRecord[] = [];
    for (const { key, value } of leaseRows) {
      const record = decodeLeaseRecord(value);
      if (record.id !== leaseIdOfKey(key)) {
        throw new Error(`lease: record under key ${leaseIdOfKey(key)} holds lease ${record.id}`);
      }
      records.push(record);
    }
    this.lessor.restore(records, this.keyView.leasedKeys());
    this.observedRevision = this.keyView.revision;
  }

  private persist(context: ExternalApply, record: LeaseRecord): void {
    context.put(LEASE_COLUMN, leaseKey(record.id), encodeLeaseRecord(record));
  }
}
