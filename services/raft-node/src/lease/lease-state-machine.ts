// Leases as part of the replicated state machine: each lease request becomes an mvcc
// `external` request, so the lessor's change, the lease record in the "lease" column and (for a
// revoke) the deletion of every attached key land in the same RocksDB batch as the raft apply
// and its applied index. Nothing here reads a clock: expiry is the primary's business (see
// Lessor); what is applied and persisted depends only on the log.
import type { AppliedTxn, ExternalApply, MvccRequest } from "../mvcc/mod.js";
import {
  decodeLeaseRecord,
  encodeLeaseRecord,
  LEASE_COLUMN,
  leaseIdOfKey,
  leaseKey,
} from "./lease-record.js";
import { type LeaseCheckpoint, type LeaseRecord, type Lessor, NO_LEASE } from "./lessor.js";

export interface LeaseGrantApplied {
  id: number;
  /** The TTL granted, after the minimum TTL was applied. */
  ttl: number;
}

export interface LeaseRevokeApplied {
  /** Keys deleted with the lease. */
  deleted: number;
  /** The store revision after the revoke (unchanged when the lease had no live keys). */
  revision: number;
}

export class LeaseStateMachine {
  constructor(readonly lessor: Lessor) {}

  /** Applies LeaseGrant{ID, TTL}; fails the entry with LeaseExist/LeaseTTLTooLarge/LeaseNotFound. */
  grantRequest(id: number, ttlSeconds: number): MvccRequest {
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
  revokeRequest(id: number): MvccRequest {
    return {
      external: (context: ExternalApply): LeaseRevokeApplied => {
        const keys = this.lessor.revoke(id);
        context.del(LEASE_COLUMN, leaseKey(id));
        const { deleted, revision } = context.deleteKeys(keys);
        return { deleted, revision };
      },
    };
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
   * (`store.subscribe((txn) => machine.observe(txn))`). mvcc notifies once a batch is durable,
   * so a revoke must not share an apply batch with earlier entries that attach keys to the
   * same lease: the wiring starts a new batch at each LeaseRevoke entry (see the report).
   */
  observe(txn: AppliedTxn): void {
    for (const event of txn.events) {
      const kv = event.kv;
      if (kv === undefined) continue;
      if (event.type === 1) {
        this.lessor.keyDeleted(kv.key);
        continue;
      }
      // A lease revoked later in the same batch is gone already; its keys were not known to
      // it at revoke time, which the batch rule above prevents.
      if (kv.lease !== NO_LEASE && this.lessor.lookup(kv.lease) === undefined) this.lessor.keyDeleted(kv.key);
      else this.lessor.keyWritten(kv.key, kv.lease);
    }
  }

  /**
   * Rebuilds the lessor at start-up from the lease column's rows and the leases recorded on
   * live keys (mvcc's leasedKeys()).
   */
  recover(
    leaseRows: Iterable<{ key: Buffer; value: Buffer }>,
    leasedKeys: Iterable<{ key: Buffer; lease: number }>,
  ): void {
    const records: LeaseRecord[] = [];
    for (const { key, value } of leaseRows) {
      const record = decodeLeaseRecord(value);
      if (record.id !== leaseIdOfKey(key)) {
        throw new Error(`lease: record under key ${leaseIdOfKey(key)} holds lease ${record.id}`);
      }
      records.push(record);
    }
    this.lessor.restore(records, leasedKeys);
  }

  private persist(context: ExternalApply, record: LeaseRecord): void {
    context.put(LEASE_COLUMN, leaseKey(record.id), encodeLeaseRecord(record));
  }
}
