// etcd's lessor (server/lease/lessor.go) as a pure state machine over an injected clock.
//
// Two kinds of callers, kept apart:
// - the apply path, identical on every member and driven only by committed entries: grant,
//   revoke, checkpoint, and key attachment as puts and deletes are applied. It never reads the
//   clock to decide anything that is persisted.
// - the leader ("primary"), the only member that tracks expiry: promote/demote on leadership
//   change, renew (keep-alive), expiredLeases() (IDs whose revoke the leader must PROPOSE; this
//   class never deletes anything by itself) and dueCheckpoints() (LeaseCheckpoint entries to
//   propose so remaining TTLs survive restarts and leader changes).
//
// Checkpoints (our rule, stricter than etcd's): every lease, whatever its TTL, is checkpointed
// once per interval while its remaining TTL differs from the recorded one, and every lease at
// once when leadership is handed over. A checkpoint records the remaining TTL minus the
// extension the next primary adds (rounded up to a second), so a new primary restarts each
// lease less than a second above where the old one had it, plus the checkpoint's age.
import { EtcdError } from "@etcd-ts/api";
import { LeaseTimeQueue } from "./lease-time-queue.js";

/** etcd's MaxLeaseTTL, seconds. */
export const MAX_LEASE_TTL = 9_000_000_000;

/** A lease ID: an int64 that uses all 64 bits (etcd's generator puts member bits at the top). */
export type LeaseId = bigint;

/** etcd's lease.NoLease. */
export const NO_LEASE: LeaseId = 0n;

/**
 * etcd's minimum lease TTL: a lease must outlive a leader election, or a leader change would
 * revoke leases their holders are keeping alive. etcd computes
 * ceil(((3 * electionTicks) / 2) * heartbeat) with integer division of the ticks.
 */
export function minLeaseTtlSeconds(heartbeatMs: number, electionMs: number): number {
  const electionTicks = Math.floor(electionMs / heartbeatMs);
  return Math.ceil((Math.floor((3 * electionTicks) / 2) * heartbeatMs) / 1000);
}

export interface LeaseCheckpoint {
  id: LeaseId;
  /** Seconds; 0 clears a previous checkpoint (the lease was renewed to its full TTL). */
  remainingTtl: number;
}

/** What is persisted per lease (etcd's leasepb.Lease). */
export interface LeaseRecord {
  id: LeaseId;
  ttl: number;
  remainingTtl: number;
}

export interface LessorOptions {
  /** Milliseconds on a monotonic clock. */
  clock: () => number;
  minTtlSeconds: number;
  /** How often the leader checkpoints a lease's remaining TTL (--experimental-lease-checkpoint-interval). */
  checkpointIntervalMs?: number;
  /** etcd's --experimental-enable-lease-checkpoint; also makes renew clear old checkpoints. */
  checkpointing?: boolean;
  /** Delay before an expired lease whose revoke has not been applied is proposed again (3 s). */
  expiredRetryIntervalMs?: number;
  /** etcd's leaseRevokeRate: at most half of it is returned per expiredLeases() call. */
  revokeRatePerSecond?: number;
  /** etcd's maxLeaseCheckpointBatchSize. */
  maxCheckpointBatch?: number;
}

export class Lease {
  /** Attached keys, as latin1 strings (one char per byte). */
  readonly keys = new Set<string>();
  /** When the lease expires on the primary's clock; Infinity on members that are not primary. */
  expiry = Number.POSITIVE_INFINITY;

  constructor(
    readonly id: LeaseId,
    /** Granted TTL in seconds, after the minimum is applied. */
    readonly ttl: number,
    /** Seconds left at the last applied checkpoint; 0 when none is in force. */
    public remainingTtl: number,
  ) {}

  /**
   * On the primary: the expiry was set by this primary (grant, renew) rather than restarted
   * from a record that a checkpoint still in the log may correct.
   */
  expirySetByPrimary = false;

  /** The TTL a new primary restarts the lease from. */
  get restartTtl(): number {
    return this.remainingTtl > 0 ? this.remainingTtl : this.ttl;
  }

  record(): LeaseRecord {
    return { id: this.id, ttl: this.ttl, remainingTtl: this.remainingTtl };
  }
}

export interface LeaseTimeToLive {
  id: LeaseId;
  /** Whole seconds left (etcd truncates). */
  ttl: number;
  grantedTtl: number;
  keys: Buffer[];
}

export class Lessor {
  private readonly leaseById = new Map<LeaseId, Lease>();
  private readonly leaseByKey = new Map<string, LeaseId>();
  private readonly expiryQueue = new LeaseTimeQueue();
  private readonly checkpointQueue = new LeaseTimeQueue();
  /** Checkpoints owed outside the schedule (a renew clearing an older checkpoint). */
  private owedCheckpoints: LeaseCheckpoint[] = [];
  private primary = false;
  /** What the current primary added to every lease on promotion (the election timeout). */
  private extendMs = 0;
  private readonly clock: () => number;
  private readonly minTtl: number;
  private readonly checkpointIntervalMs: number;
  private readonly checkpointing: boolean;
  private readonly expiredRetryIntervalMs: number;
  private readonly revokeRate: number;
  private readonly maxCheckpointBatch: number;

  constructor(options: LessorOptions) {
    this.clock = options.clock;
    this.minTtl = options.minTtlSeconds;
    this.checkpointIntervalMs = options.checkpointIntervalMs ?? 5 * 60 * 1000;
    this.checkpointing = options.checkpointing ?? true;
    this.expiredRetryIntervalMs = options.expiredRetryIntervalMs ?? 3000;
    this.revokeRate = options.revokeRatePerSecond ?? 1000;
    this.maxCheckpointBatch = options.maxCheckpointBatch ?? 1000;
  }

  get isPrimary(): boolean {
    return this.primary;
  }

  get size(): number {
    return this.leaseById.size;
  }

  lookup(id: LeaseId): Lease | undefined {
    return this.leaseById.get(id);
  }

  /** The lease a key is attached to, NO_LEASE if none. */
  leaseOf(key: Buffer): LeaseId {
    return this.leaseByKey.get(key.toString("latin1")) ?? NO_LEASE;
  }

  // ---- apply path (every member, in log order) ----

  /** Applies a LeaseGrant. The ID was chosen by the proposer (client or generator), never here. */
  grant(id: LeaseId, ttlSeconds: number): Lease {
    if (id === NO_LEASE) throw new EtcdError("LeaseNotFound");
    if (ttlSeconds > MAX_LEASE_TTL) throw new EtcdError("LeaseTTLTooLarge");
    if (this.leaseById.has(id)) throw new EtcdError("LeaseExist");
    const lease = new Lease(id, Math.max(ttlSeconds, this.minTtl), 0);
    this.leaseById.set(id, lease);
    if (this.primary) {
      lease.expirySetByPrimary = true;
      this.refresh(lease, 0, lease.ttl);
      this.scheduleCheckpoint(lease);
    }
    return lease;
  }

  /**
   * Applies a LeaseRevoke: forgets the lease and its attachments and returns the attached
   * keys, sorted, for the caller to delete in the same transaction and write batch as the
   * lease record (sorted so every member produces the same deletes and the same hash).
   */
  revoke(id: LeaseId): Buffer[] {
    const lease = this.leaseById.get(id);
    if (lease === undefined) throw new EtcdError("LeaseNotFound");
    this.leaseById.delete(id);
    this.expiryQueue.remove(id);
    this.checkpointQueue.remove(id);
    const keys = [...lease.keys].sort();
    for (const key of keys) this.leaseByKey.delete(key);
    return keys.map((key) => Buffer.from(key, "latin1"));
  }

  /**
   * Applies a LeaseCheckpoint: records the remaining TTL a new primary restarts from. Returns
   * the lease to persist, or undefined for a lease already gone.
   *
   * On the primary, a checkpoint can arrive after promotion (the old leader's last ones commit
   * in the new term). If this primary's expiry came from restarting an older record, the
   * checkpoint is newer knowledge: the expiry moves to it (down to a later record, up when a
   * renew cleared it). If this primary renewed or granted the lease since, its own expiry
   * stands, and a record that would now restart the lease too early is corrected.
   */
  checkpoint(id: LeaseId, remainingTtl: number): Lease | undefined {
    const lease = this.leaseById.get(id);
    if (lease === undefined) return undefined;
    lease.remainingTtl = remainingTtl;
    if (!this.primary) return lease;
    if (!lease.expirySetByPrimary) {
      const restarted = this.clock() + this.extendMs + lease.restartTtl * 1000;
      if (remainingTtl > 0 ? restarted < lease.expiry : restarted > lease.expiry) {
        lease.expiry = restarted;
        this.expiryQueue.upsert(lease.id, lease.expiry);
      }
    } else {
      const current = this.checkpointValue(lease, this.clock());
      if (remainingTtl > 0 && (current === 0 || current > remainingTtl)) {
        this.owedCheckpoints.push({ id, remainingTtl: current });
      }
    }
    this.scheduleCheckpoint(lease);
    return lease;
  }

  /**
   * A key was written with `lease` attached (NO_LEASE for none): moves the key from the lease
   * it had, as etcd's mvcc put does. Must run as the put is applied, before the next entry, so
   * a revoke applied right after sees it.
   */
  keyWritten(key: Buffer, lease: LeaseId): void {
    // No key is on a lease: one written without a lease has none to leave (every put of a
    // workload without leases, on every member, skips the key's string and map lookup).
    if (lease === NO_LEASE && this.leaseByKey.size === 0) return;
    const name = key.toString("latin1");
    const previous = this.leaseByKey.get(name) ?? NO_LEASE;
    if (previous === lease) return;
    if (previous !== NO_LEASE) {
      this.leaseById.get(previous)?.keys.delete(name);
      this.leaseByKey.delete(name);
    }
    if (lease === NO_LEASE) return;
    const target = this.leaseById.get(lease);
    // mvcc refuses a put naming a missing lease before applying anything; reaching here means
    // the state machine and the lessor disagree, which must not go unnoticed.
    if (target === undefined) throw new EtcdError("LeaseNotFound");
    target.keys.add(name);
    this.leaseByKey.set(name, lease);
  }

  /** A key was deleted: it leaves its lease. */
  keyDeleted(key: Buffer): void {
    this.keyWritten(key, NO_LEASE);
  }

  /**
   * Rebuilds the state from persisted lease records and the leases recorded on stored keys
   * (etcd's Recover plus mvcc's restore). Leases start without expiry; a primary re-arms them.
   */
  restore(records: Iterable<LeaseRecord>, attachedKeys: Iterable<{ key: Buffer; lease: LeaseId }>): void {
    this.leaseById.clear();
    this.leaseByKey.clear();
    this.expiryQueue.clear();
    this.checkpointQueue.clear();
    this.owedCheckpoints = [];
    for (const record of records) {
      this.leaseById.set(
        record.id,
        new Lease(record.id, Math.max(record.ttl, this.minTtl), record.remainingTtl),
      );
    }
    for (const { key, lease } of attachedKeys) {
      if (lease === NO_LEASE) continue;
      const target = this.leaseById.get(lease);
      // etcd logs and goes on: a key may outlive its lease record only through an old bug or a
      // hand-edited store, and refusing to start would not help the operator.
      if (target === undefined) continue;
      const name = key.toString("latin1");
      target.keys.add(name);
      this.leaseByKey.set(name, lease);
    }
    if (this.primary) {
      for (const lease of this.leaseById.values()) {
        this.refresh(lease, 0, lease.restartTtl);
        this.scheduleCheckpoint(lease);
      }
    }
  }

  // ---- the primary (Raft leader) ----

  /**
   * Becomes primary: every lease restarts its countdown from its checkpointed remaining TTL
   * (its full TTL without one), plus `extendMs` (etcd passes the election timeout) so holders
   * have time to find the new leader. With many leases, expiries are spread so no second has to
   * revoke more than three quarters of the revoke rate, as etcd does.
   */
  promote(extendMs: number): void {
    this.primary = true;
    this.extendMs = extendMs;
    const now = this.clock();
    for (const lease of this.leaseById.values()) {
      lease.expirySetByPrimary = false;
      this.refresh(lease, extendMs, lease.restartTtl);
      this.scheduleCheckpoint(lease);
    }
    if (this.leaseById.size < this.revokeRate) return;

    const leases = [...this.leaseById.values()].sort((a, b) => a.expiry - b.expiry);
    let baseWindow = leases[0].expiry - now;
    let nextWindow = baseWindow + 1000;
    let expires = 0;
    const targetPerSecond = Math.floor((3 * this.revokeRate) / 4);
    for (const lease of leases) {
      const remaining = lease.expiry - now;
      if (remaining > nextWindow) {
        baseWindow = remaining;
        nextWindow = baseWindow + 1000;
        expires = 1;
        continue;
      }
      expires++;
      if (expires <= targetPerSecond) continue;
      let delay = 1000 * (expires / targetPerSecond);
      // A lease already `remaining - baseWindow` past the window start needs that much less.
      delay -= remaining - baseWindow;
      nextWindow = baseWindow + delay;
      this.refresh(lease, delay + extendMs, lease.restartTtl);
      this.scheduleCheckpoint(lease);
    }
  }

  demote(): void {
    this.primary = false;
    for (const lease of this.leaseById.values()) lease.expiry = Number.POSITIVE_INFINITY;
    this.expiryQueue.clear();
    this.checkpointQueue.clear();
    this.owedCheckpoints = [];
  }

  /**
   * A keep-alive on the leader: the lease runs its full TTL again from now. Returns that TTL,
   * and the checkpoint that clears a remainder still recorded: the caller must have it
   * committed before answering (as etcd does), or a next leader would restart the lease from
   * that remainder and expire it before the TTL the holder was promised.
   * An already expired lease is reported missing: its revoke is on its way through the log
   * (etcd makes the caller wait for it; the answer is the same, TTL 0 / not found).
   */
  renew(id: LeaseId): { ttl: number; clear: LeaseCheckpoint | undefined } {
    if (!this.primary) throw new EtcdError("NotLeader");
    const lease = this.leaseById.get(id);
    const now = this.clock();
    if (lease === undefined || lease.expiry <= now) throw new EtcdError("LeaseNotFound");
    lease.expirySetByPrimary = true;
    this.refresh(lease, 0, lease.ttl);
    const clear = this.checkpointing && lease.remainingTtl > 0 ? { id, remainingTtl: 0 } : undefined;
    return { ttl: lease.ttl, clear };
  }

  /**
   * Leases past their expiry whose revoke the leader should propose now, at most half the
   * revoke rate per call (etcd polls every 500 ms). A returned lease is not returned again
   * before the retry interval, so a revoke stuck in the log is re-proposed, not spammed.
   */
  expiredLeases(): LeaseId[] {
    if (!this.primary) return [];
    const now = this.clock();
    const limit = Math.max(1, Math.floor(this.revokeRate / 2));
    const expired: LeaseId[] = [];
    while (expired.length < limit) {
      const next = this.expiryQueue.peek();
      if (next === undefined || next.time > now) break;
      const lease = this.leaseById.get(next.id);
      if (lease === undefined) {
        this.expiryQueue.pop();
        continue;
      }
      this.expiryQueue.upsert(lease.id, now + this.expiredRetryIntervalMs);
      if (lease.expiry <= now) expired.push(lease.id);
    }
    return expired;
  }

  /**
   * LeaseCheckpoint entries the leader should propose now (one batch): leases whose interval
   * has passed and whose record differs from what they have left. Each is looked at again one
   * interval later, renewed or not (etcd drops a renewed lease from its schedule, leaving it
   * unrecorded once its holder goes quiet).
   */
  dueCheckpoints(): LeaseCheckpoint[] {
    if (!this.primary || !this.checkpointing) return [];
    const now = this.clock();
    const due = this.owedCheckpoints.splice(0, this.maxCheckpointBatch);
    while (due.length < this.maxCheckpointBatch) {
      const next = this.checkpointQueue.peek();
      if (next === undefined || next.time > now) break;
      this.checkpointQueue.pop();
      const lease = this.leaseById.get(next.id);
      if (lease === undefined || now >= lease.expiry) continue;
      this.checkpointQueue.upsert(lease.id, now + this.checkpointIntervalMs);
      const remainingTtl = this.checkpointValue(lease, now);
      if (remainingTtl !== lease.remainingTtl) due.push({ id: lease.id, remainingTtl });
    }
    return due;
  }

  /**
   * Every lease's checkpoint, for a leader about to hand over: proposed just before the
   * transfer, they are in the log the transferee must match before it campaigns, so it
   * restarts every lease from where this one had it.
   */
  handoverCheckpoints(): LeaseCheckpoint[] {
    if (!this.primary || !this.checkpointing) return [];
    const now = this.clock();
    const all: LeaseCheckpoint[] = [];
    for (const lease of this.leaseById.values()) {
      if (now >= lease.expiry) continue;
      const remainingTtl = this.checkpointValue(lease, now);
      if (remainingTtl !== lease.remainingTtl) all.push({ id: lease.id, remainingTtl });
    }
    return all;
  }

  // ---- queries ----

  /** LeaseTimeToLive, answered by the primary (other members forward to it, as etcd does). */
  timeToLive(id: LeaseId, withKeys: boolean): LeaseTimeToLive {
    if (!this.primary) throw new EtcdError("NotLeader");
    const lease = this.leaseById.get(id);
    if (lease === undefined) throw new EtcdError("LeaseNotFound");
    const remainingMs = Math.max(0, lease.expiry - this.clock());
    return {
      id,
      ttl: Math.trunc(remainingMs / 1000),
      grantedTtl: lease.ttl,
      keys: withKeys ? [...lease.keys].sort().map((key) => Buffer.from(key, "latin1")) : [],
    };
  }

  /** Every lease ID, soonest expiry first (etcd's Leases order). */
  leases(): LeaseId[] {
    // Off the primary every expiry is Infinity, where subtraction would give NaN.
    const byExpiry = (a: Lease, b: Lease) =>
      a.expiry !== b.expiry ? (a.expiry < b.expiry ? -1 : 1) : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    return [...this.leaseById.values()].sort(byExpiry).map((lease) => lease.id);
  }

  // ---- internals ----

  private refresh(lease: Lease, extendMs: number, ttlSeconds: number): void {
    lease.expiry = this.clock() + extendMs + ttlSeconds * 1000;
    this.expiryQueue.upsert(lease.id, lease.expiry);
  }

  private scheduleCheckpoint(lease: Lease): void {
    if (!this.checkpointing) return;
    this.checkpointQueue.upsert(lease.id, this.clock() + this.checkpointIntervalMs);
  }

  /**
   * The record that makes a next primary (which adds `extendMs`) restart the lease within a
   * second above its remaining time, never below it: the remainder less the extension, in
   * whole seconds rounded up, at least 1; 0 (no record: restart from the full TTL) when that
   * reaches the TTL.
   */
  private checkpointValue(lease: Lease, now: number): number {
    const seconds = Math.max(1, Math.ceil((lease.expiry - now - this.extendMs) / 1000));
    return seconds >= lease.ttl ? 0 : seconds;
  }
}
