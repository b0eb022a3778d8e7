// Execution of applied KV requests against the key index, etcd's semantics exactly
// (server/storage/mvcc/kvstore_txn.go and server/etcdserver/txn/txn.go). Everything here is
// synchronous: the store runs a whole batch of applies, then one RocksDB write, in a single tick,
// so no reader ever sees a half-applied transaction.
import { EtcdError } from "@etcd-ts/api";
import { compareHolds } from "./compare.js";
import type { KeyIndex } from "./key-index.js";
import { encodeKeyValue } from "./kv-codec.js";
import { indexLimit, shapeRange } from "./range-shaping.js";
import { revisionKey } from "./revision.js";
import type { KeyBounds, PreviousHead, RangeHit, TreeIndex } from "./tree-index.js";
import type {
  Compare,
  DeleteRangeRequest,
  DeleteRangeResponse,
  KeyValue,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  RequestOp,
  ResponseHeader,
  ResponseOp,
  TxnRequest,
  TxnResponse,
} from "./types.js";
import { CompareTarget, EventType, SortTarget } from "./types.js";

const EMPTY = Buffer.alloc(0);
/** WriteTxn.put's scratch for the key's previous head: read right after the index fills it. */
const PREVIOUS: PreviousHead = { live: false, created: 0, version: 0, headMain: 0, headSub: 0 };

/** What write execution needs from the store. */
export interface ApplyTarget {
  readonly index: TreeIndex;
  currentRev: number;
  readonly compactMainRev: number;
  readonly leaseExists: ((lease: bigint) => boolean) | undefined;
  /** Adds a revision to the pending RocksDB batch and makes its value readable until written. */
  stage(main: number, sub: number, key: Buffer, value: Buffer): void;
  /** Values of the given revisions, from the pending batch or RocksDB, decoded. */
  readKeyValues(hits: RangeHit[]): KeyValue[];
}

/** One change made by a write txn: etcd's `changes`, plus where the previous revision lives. */
export interface Change {
  type: EventType;
  kv: KeyValue;
  prevMain: number;
  prevSub: number;
}

export function header(revision: number): ResponseHeader {
  return { clusterId: 0n, memberId: 0n, revision, raftTerm: 0 };
}

export function keyBounds(key: Buffer, rangeEnd: Buffer): KeyBounds {
  const start = key.toString("latin1");
  if (rangeEnd.length === 0) return { start, end: undefined };
  // etcd's mkGteRange: a single zero byte means "no upper bound".
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { start, end: "" };
  return { start, end: rangeEnd.toString("latin1") };
}

/** A KeyValue built from the index alone: valid for a key's latest revision, minus the value. */
export function keyValueFromIndex(hit: RangeHit): KeyValue {
  return {
    key: Buffer.from(hit.index.key, "latin1"),
    createRevision: hit.created,
    modRevision: hit.main,
    version: hit.version,
    value: EMPTY,
    lease: hit.index.lease,
  };
}

export function isLatest(hit: RangeHit): boolean {
  return hit.index.isHead(hit.main, hit.sub);
}

/** Reads kvs for hits, touching the disk only for what the index cannot supply. */
export function materialize(target: ApplyTarget, hits: RangeHit[], needValues: boolean): KeyValue[] {
  if (!needValues && hits.every(isLatest)) return hits.map(keyValueFromIndex);
  return target.readKeyValues(hits);
}

/** etcd's rangeKeys checks: a revision past curRev is in the future; below the compaction, gone. */
export function resolveRangeRevision(requested: number, curRev: number, compactMainRev: number): number {
  if (requested > curRev) throw new EtcdError("FutureRev");
  const rev = requested <= 0 ? curRev : requested;
  if (rev < compactMainRev) throw new EtcdError("Compacted");
  return rev;
}

/** A range evaluated synchronously (inside an apply) at curRev. */
export function rangeSync(target: ApplyTarget, r: RangeRequest, curRev: number): RangeResponse {
  const rev = resolveRangeRevision(r.revision, curRev, target.compactMainRev);
  const bounds = keyBounds(r.key, r.rangeEnd);
  if (r.countOnly) {
    return { header: header(curRev), kvs: [], more: false, count: target.index.count(bounds, rev) };
  }
  const { hits, total } = target.index.revisions(bounds, rev, indexLimit(r));
  const kvs = materialize(target, hits, !r.keysOnly || r.sortTarget === SortTarget.VALUE);
  const shaped = shapeRange(r, kvs);
  return { header: header(curRev), kvs: shaped.kvs, more: shaped.more, count: total };
}

export class WriteTxn {
  readonly changes: Change[] = [];

  constructor(
    private readonly target: ApplyTarget,
    readonly beginRev: number,
  ) {}

  /** The revision reads inside this txn see: its own writes count once it has any. */
  get readRev(): number {
    return this.changes.length > 0 ? this.beginRev + 1 : this.beginRev;
  }

  /** The revision the txn ends at (unchanged when it wrote nothing). */
  get endRev(): number {
    return this.readRev;
  }

  put(key: Buffer, value: Buffer, lease: bigint): void {
    const rev = this.beginRev + 1;
    const sub = this.changes.length;
    // The index is updated first, reporting the key's head before this put in the same search
    // (it was a lookup, then a second search to put). Safe to reorder: nothing below reads the
    // index, and a write that fails after this point fails the whole batch (applyNow).
    const previous = PREVIOUS;
    this.target.index.put(key.toString("latin1"), rev, sub, lease, previous);
    let created = rev;
    let version = 1;
    let prevMain = -1;
    let prevSub = -1;
    if (previous.live) {
      created = previous.created;
      version = previous.version + 1;
      prevMain = previous.headMain;
      prevSub = previous.headSub;
    }
    const kv: KeyValue = { key, createRevision: created, modRevision: rev, version, value, lease };
    this.target.stage(rev, sub, revisionKey(rev, sub), encodeKeyValue(kv));
    this.changes.push({ type: EventType.PUT, kv, prevMain, prevSub });
  }

  /** Deletes the live key `ki` describes (read from the index in this txn). */
  delete(ki: KeyIndex): void {
    const rev = this.beginRev + 1;
    const sub = this.changes.length;
    const prevMain = ki.headMain;
    const prevSub = ki.headSub;
    const key = Buffer.from(ki.key, "latin1");
    const stored: KeyValue = { key, createRevision: 0, modRevision: 0, version: 0, value: EMPTY, lease: 0n };
    this.target.stage(rev, sub, revisionKey(rev, sub, true), encodeKeyValue(stored));
    this.target.index.tombstone(ki.key, rev, sub);
    // Watchers see a deletion's revision as its mod_revision (etcd's watchable txn End).
    const kv: KeyValue = { key, createRevision: 0, modRevision: rev, version: 0, value: EMPTY, lease: 0n };
    this.changes.push({ type: EventType.DELETE, kv, prevMain, prevSub });
  }

  deleteRange(bounds: KeyBounds): number {
    const keys = this.target.index.liveKeys(bounds);
    for (const ki of keys) this.delete(ki);
    return keys.length;
  }
}

// --- Put -----------------------------------------------------------------------------------

export function checkLease(target: ApplyTarget, lease: bigint): void {
  if (lease !== 0n && target.leaseExists !== undefined && !target.leaseExists(lease)) {
    throw new EtcdError("LeaseNotFound");
  }
}

/** The key's kv at the txn's read revision, with or without its value. */
function currentKeyValue(
  target: ApplyTarget,
  txn: WriteTxn,
  key: Buffer,
  withValue: boolean,
): KeyValue | undefined {
  const { hits } = target.index.revisions({ start: key.toString("latin1"), end: undefined }, txn.readRev, 0);
  if (hits.length === 0) return undefined;
  return materialize(target, hits, withValue)[0];
}

export function executePut(target: ApplyTarget, txn: WriteTxn, p: PutRequest): PutResponse {
  let value = p.value;
  let lease = p.lease;
  let prev: KeyValue | undefined;
  if (p.ignoreValue || p.ignoreLease || p.prevKv) {
    prev = currentKeyValue(target, txn, p.key, p.ignoreValue || p.prevKv);
  }
  if ((p.ignoreValue || p.ignoreLease) && prev === undefined) throw new EtcdError("KeyNotFound");
  if (p.ignoreValue) value = prev!.value;
  if (p.ignoreLease) lease = prev!.lease;
  txn.put(p.key, value, lease);
  return { header: header(txn.beginRev + 1), prevKv: p.prevKv ? prev : undefined };
}

/**
 * A top-level Put, as etcd's applier runs it: lease lookup, then the write. The request's own
 * shape was checked by the RPC layer before proposing (v3rpc/request-validation.ts); apply
 * checks only what depends on the replicated state, so every member decides alike.
 */
export function applyPut(target: ApplyTarget, txn: WriteTxn, p: PutRequest): PutResponse {
  checkLease(target, p.lease);
  return executePut(target, txn, p);
}

// --- DeleteRange ---------------------------------------------------------------------------

export function executeDeleteRange(
  target: ApplyTarget,
  txn: WriteTxn,
  d: DeleteRangeRequest,
): DeleteRangeResponse {
  const bounds = keyBounds(d.key, d.rangeEnd);
  let prevKvs: KeyValue[] = [];
  if (d.prevKv) {
    const { hits } = target.index.revisions(bounds, txn.readRev, 0);
    prevKvs = materialize(target, hits, true);
  }
  const deleted = txn.deleteRange(bounds);
  const revision = deleted !== 0 || txn.changes.length > 0 ? txn.beginRev + 1 : txn.beginRev;
  return { header: header(revision), deleted, prevKvs };
}

// --- Txn -----------------------------------------------------------------------------------

function compareAt(target: ApplyTarget, c: Compare, rev: number): boolean {
  // A missing range_end compares one key; "\0" compares every key from c.key on.
  const bounds = keyBounds(c.key, c.rangeEnd);
  const { hits } = target.index.revisions(bounds, rev, 0);
  return compareHolds(c, materialize(target, hits, c.target === CompareTarget.VALUE));
}

/**
 * etcd's compareToPath: every compare of the txn and of the nested txns on the chosen branches
 * is evaluated up front against the state before the txn runs.
 */
function compareToPath(target: ApplyTarget, t: TxnRequest, rev: number, path: boolean[]): void {
  const succeeded = t.compare.every((c) => compareAt(target, c, rev));
  path.push(succeeded);
  for (const op of succeeded ? t.success : t.failure) {
    if (op.requestTxn) compareToPath(target, op.requestTxn, rev, path);
  }
}

interface PathCursor {
  path: boolean[];
  at: number;
}

/** etcd's checkTxn: request errors on the chosen path are found before anything is written. */
function checkTxnPath(target: ApplyTarget, t: TxnRequest, cursor: PathCursor): void {
  const ops = cursor.path[cursor.at++] ? t.success : t.failure;
  for (const op of ops) {
    if (op.requestRange) {
      const rev = op.requestRange.revision;
      if (rev > target.currentRev) throw new EtcdError("FutureRev");
      if (rev !== 0 && rev < target.compactMainRev) throw new EtcdError("Compacted");
    } else if (op.requestPut) {
      const p = op.requestPut;
      if (p.ignoreValue || p.ignoreLease) {
        const exists = target.index.lookup(p.key.toString("latin1"))?.isLive ?? false;
        if (!exists) throw new EtcdError("KeyNotFound");
      }
      checkLease(target, p.lease);
    } else if (op.requestTxn) {
      checkTxnPath(target, op.requestTxn, cursor);
    }
  }
}

function executeTxnOps(target: ApplyTarget, txn: WriteTxn, t: TxnRequest, cursor: PathCursor): TxnResponse {
  const succeeded = cursor.path[cursor.at++]!;
  const responses: ResponseOp[] = [];
  for (const op of succeeded ? t.success : t.failure) responses.push(executeOp(target, txn, op, cursor));
  // etcd leaves a nested txn's header revision at zero; the top-level one is set by applyTxn.
  return { header: header(0), succeeded, responses };
}

function executeOp(target: ApplyTarget, txn: WriteTxn, op: RequestOp, cursor: PathCursor): ResponseOp {
  if (op.requestRange) return { responseRange: rangeSync(target, op.requestRange, txn.readRev) };
  if (op.requestPut) return { responsePut: executePut(target, txn, op.requestPut) };
  if (op.requestDeleteRange)
    return { responseDeleteRange: executeDeleteRange(target, txn, op.requestDeleteRange) };
  if (op.requestTxn) return { responseTxn: executeTxnOps(target, txn, op.requestTxn, cursor) };
  return {};
}

/**
 * etcd's applier Txn. No --max-txn-ops or shape check here: those are the proposer's RPC layer's
 * (a committed txn must give the same result on members started with different limits).
 */
export function applyTxn(target: ApplyTarget, txn: WriteTxn, t: TxnRequest): TxnResponse {
  const path: boolean[] = [];
  compareToPath(target, t, txn.beginRev, path);
  checkTxnPath(target, t, { path, at: 0 });
  const response = executeTxnOps(target, txn, t, { path, at: 0 });
  response.header = header(txn.endRev);
  return response;
}

/** etcd's quota cost (server/storage/quota.go): what a request may add to the backend. */
const KV_OVERHEAD = 256;

export function putCost(p: PutRequest): number {
  return KV_OVERHEAD + p.key.length + p.value.length;
}

export function txnCost(t: TxnRequest): number {
  let success = 0;
  for (const op of t.success) if (op.requestPut) success += putCost(op.requestPut);
  let failure = 0;
  for (const op of t.failure) if (op.requestPut) failure += putCost(op.requestPut);
  return Math.max(success, failure);
}
