// The boundary between the API's messages (ts-proto, forceLong=bigint: every int64 exact) and
// the store's shapes (revisions, versions and counts as JS numbers; lease and member IDs as
// bigint). Requests come in through here on the RPC path and again at apply time, from the
// same decoded bytes, so every member converts a committed entry the same way.
//
// A client may send any int64 where the store keeps a number. Number() keeps the order of such
// a value relative to every revision a store can reach (all below 2^53), so etcd's answers
// follow from the store's own checks: a Range or Compaction at 2^62 is "a future revision", a
// Compare against 2^62 is false or true as in etcd, a limit of 2^62 is no limit.
import type { etcdserverpb, mvccpb } from "@etcd-ts/api";
import type {
  AlarmRequest,
  CompactionRequest,
  Compare,
  DeleteRangeRequest,
  HashKVResponse,
  KeyValue,
  PutRequest,
  RangeRequest,
  RequestOp,
  ResponseHeader,
  TxnRequest,
} from "./types.js";

export function rangeRequestFromApi(r: etcdserverpb.RangeRequest): RangeRequest {
  return {
    key: r.key,
    rangeEnd: r.rangeEnd,
    limit: Number(r.limit),
    revision: Number(r.revision),
    sortOrder: r.sortOrder,
    sortTarget: r.sortTarget,
    serializable: r.serializable,
    keysOnly: r.keysOnly,
    countOnly: r.countOnly,
    minModRevision: Number(r.minModRevision),
    maxModRevision: Number(r.maxModRevision),
    minCreateRevision: Number(r.minCreateRevision),
    maxCreateRevision: Number(r.maxCreateRevision),
  };
}

/** PutRequest has no field the store keeps as a number: the API's object serves as it is. */
export function putRequestFromApi(r: etcdserverpb.PutRequest): PutRequest {
  return r;
}

export function deleteRangeRequestFromApi(r: etcdserverpb.DeleteRangeRequest): DeleteRangeRequest {
  return r;
}

function compareFromApi(c: etcdserverpb.Compare): Compare {
  return {
    result: c.result,
    target: c.target,
    key: c.key,
    version: c.version === undefined ? undefined : Number(c.version),
    createRevision: c.createRevision === undefined ? undefined : Number(c.createRevision),
    modRevision: c.modRevision === undefined ? undefined : Number(c.modRevision),
    value: c.value,
    lease: c.lease,
    rangeEnd: c.rangeEnd,
  };
}

function requestOpFromApi(op: etcdserverpb.RequestOp): RequestOp {
  if (op.requestRange !== undefined) return { requestRange: rangeRequestFromApi(op.requestRange) };
  if (op.requestPut !== undefined) return { requestPut: op.requestPut };
  if (op.requestDeleteRange !== undefined) return { requestDeleteRange: op.requestDeleteRange };
  if (op.requestTxn !== undefined) return { requestTxn: txnRequestFromApi(op.requestTxn) };
  return {};
}

export function txnRequestFromApi(r: etcdserverpb.TxnRequest): TxnRequest {
  return {
    compare: r.compare.map(compareFromApi),
    success: r.success.map(requestOpFromApi),
    failure: r.failure.map(requestOpFromApi),
  };
}

export function compactionRequestFromApi(r: etcdserverpb.CompactionRequest): CompactionRequest {
  return { revision: Number(r.revision), physical: r.physical };
}

export function alarmRequestFromApi(r: etcdserverpb.AlarmRequest): AlarmRequest {
  return { action: r.action, memberID: r.memberID, alarm: r.alarm };
}

/** For responses built outside the KV service (election, lock): one conversion per message. */
export function apiHeader(h: ResponseHeader): etcdserverpb.ResponseHeader {
  return {
    clusterId: h.clusterId,
    memberId: h.memberId,
    revision: BigInt(h.revision),
    raftTerm: BigInt(h.raftTerm),
  };
}

/** A HashKV answer as clients (Maintenance.HashKV) and peers (RaftPeer.HashKV) receive it. */
export function apiHashKV(r: HashKVResponse, header: ResponseHeader): etcdserverpb.HashKVResponse {
  return {
    header: apiHeader(header),
    hash: r.hash,
    compactRevision: BigInt(r.compactRevision),
    hashRevision: BigInt(r.hashRevision),
  };
}

export function apiKeyValue(kv: KeyValue): mvccpb.KeyValue {
  return {
    key: kv.key,
    createRevision: BigInt(kv.createRevision),
    modRevision: BigInt(kv.modRevision),
    version: BigInt(kv.version),
    value: kv.value,
    lease: kv.lease,
  };
}
