// etcd's request checks (server/etcdserver/api/v3rpc/key.go), pure functions of the request.
// The gRPC layer can run them before proposing; the store runs them again at apply time, where
// they are deterministic, so a bad request is refused identically on every member and changes
// nothing.
import { EtcdError } from "@etcd-ts/api";
import type { DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest } from "../mvcc/mod.js";
import { SortOrder, SortTarget } from "../mvcc/mod.js";

/** etcd's default --max-txn-ops. */
export const DEFAULT_MAX_TXN_OPS = 128;

const VALID_SORT_ORDERS = new Set<number>(Object.values(SortOrder));
const VALID_SORT_TARGETS = new Set<number>(Object.values(SortTarget));

export function checkRangeRequest(r: RangeRequest): void {
  if (r.key.length === 0) throw new EtcdError("EmptyKey");
  if (!VALID_SORT_ORDERS.has(r.sortOrder) || !VALID_SORT_TARGETS.has(r.sortTarget)) {
    throw new EtcdError("InvalidSortOption");
  }
}

export function checkPutRequest(r: PutRequest): void {
  if (r.key.length === 0) throw new EtcdError("EmptyKey");
  if (r.ignoreValue && r.value.length !== 0) throw new EtcdError("ValueProvided");
  if (r.ignoreLease && r.lease !== 0n) throw new EtcdError("LeaseProvided");
}

export function checkDeleteRequest(r: DeleteRangeRequest): void {
  if (r.key.length === 0) throw new EtcdError("EmptyKey");
}

export function checkTxnRequest(r: TxnRequest, maxTxnOps = DEFAULT_MAX_TXN_OPS): void {
  checkTxnShape(r, maxTxnOps);
  // Overlap checks come after the shape checks so a huge request fails fast, as in etcd.
  checkIntervals(r.success);
  checkIntervals(r.failure);
}

function checkTxnShape(r: TxnRequest, maxTxnOps: number): void {
  const opCount = Math.max(r.compare.length, r.success.length, r.failure.length);
  if (opCount > maxTxnOps) throw new EtcdError("TooManyOps");
  for (const c of r.compare) if (c.key.length === 0) throw new EtcdError("EmptyKey");
  for (const op of r.success) checkRequestOp(op, maxTxnOps - opCount);
  for (const op of r.failure) checkRequestOp(op, maxTxnOps - opCount);
}

function checkRequestOp(op: RequestOp, maxTxnOps: number): void {
  if (op.requestRange) checkRangeRequest(op.requestRange);
  else if (op.requestPut) checkPutRequest(op.requestPut);
  else if (op.requestDeleteRange) checkDeleteRequest(op.requestDeleteRange);
  else if (op.requestTxn) checkTxnShape(op.requestTxn, maxTxnOps);
  // etcd answers an empty RequestOp with "key not found".
  else throw new EtcdError("KeyNotFound");
}

/**
 * A deleted interval, compared the way etcd's adt.StringAffine intervals compare: a delete
 * without range_end covers one key; with one it covers [key, range_end) bytewise, so a
 * from-key delete (range_end "\0") covers nothing here, exactly as in etcd.
 */
interface DeletedInterval {
  start: Buffer;
  end: Buffer | undefined;
}

function covers(interval: DeletedInterval, key: Buffer): boolean {
  if (interval.end === undefined) return interval.start.equals(key);
  return Buffer.compare(interval.start, key) <= 0 && Buffer.compare(key, interval.end) < 0;
}

function anyCovers(intervals: DeletedInterval[], key: Buffer): boolean {
  for (const interval of intervals) if (covers(interval, key)) return true;
  return false;
}

/**
 * etcd's checkIntervals: refuses a txn branch that puts the same key twice, or puts a key that
 * one of its deletes covers, looking into nested txns (their success and failure branches
 * exclude each other, so the same put in both is allowed). Two overlapping deletes are allowed.
 */
function checkIntervals(ops: RequestOp[]): { puts: Set<string>; dels: DeletedInterval[] } {
  const dels: DeletedInterval[] = [];
  for (const op of ops) {
    const d = op.requestDeleteRange;
    if (d) dels.push({ start: d.key, end: d.rangeEnd.length !== 0 ? d.rangeEnd : undefined });
  }
  const puts = new Set<string>();
  for (const op of ops) {
    const t = op.requestTxn;
    if (!t) continue;
    const then = checkIntervals(t.success);
    const otherwise = checkIntervals(t.failure);
    for (const k of then.puts) {
      if (puts.has(k) || anyCovers(dels, Buffer.from(k, "latin1"))) throw new EtcdError("DuplicateKey");
      puts.add(k);
    }
    for (const k of otherwise.puts) {
      if (puts.has(k) && !then.puts.has(k)) throw new EtcdError("DuplicateKey");
      if (anyCovers(dels, Buffer.from(k, "latin1"))) throw new EtcdError("DuplicateKey");
      puts.add(k);
    }
    dels.push(...then.dels, ...otherwise.dels);
  }
  for (const op of ops) {
    const p = op.requestPut;
    if (!p) continue;
    const k = p.key.toString("latin1");
    if (puts.has(k) || anyCovers(dels, p.key)) throw new EtcdError("DuplicateKey");
    puts.add(k);
  }
  return { puts, dels };
}

/** etcd's IsTxnReadonly: only range ops at the top level of both branches. */
export function isTxnReadOnly(r: TxnRequest): boolean {
  for (const op of r.success) if (!op.requestRange) return false;
  for (const op of r.failure) if (!op.requestRange) return false;
  return true;
}
