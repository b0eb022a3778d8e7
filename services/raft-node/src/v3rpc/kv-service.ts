// etcdserverpb.KV: reads are served locally (after a ReadIndex round unless serializable);
// writes are validated, checked against the quota, and proposed as the client's own bytes.
import { EtcdError, etcdserverpb } from "@etcd-ts/api";
import {
  type CompactionResponse,
  checkDeleteRequest,
  checkPutRequest,
  checkTxnRequest,
  compactionRequestFromApi,
  type DeleteRangeResponse,
  deleteRangeRequestFromApi,
  encodeCompactionResponse,
  encodeDeleteRangeResponse,
  encodePutResponse,
  encodeRangeResponse,
  encodeTxnResponse,
  type MvccRequest,
  type PutResponse,
  putRequestFromApi,
  type RangeResponse,
  type ResponseHeader,
  rangeRequestFromApi,
  type TxnResponse,
  txnRequestFromApi,
} from "../mvcc/mod.js";
import { EntryKind } from "../server/entry-envelope.js";
import type { Member } from "../server/member.js";
import { encodingResponsesWith, keepingRequestBytes, requestBytes } from "./raw-requests.js";
import { unary } from "./rpc-errors.js";

export function refuseLearner(member: Member): void {
  if (member.isLearner()) throw new EtcdError("LearnerNotSupported");
}

function bytesOf(request: object, encode: () => Uint8Array): Uint8Array {
  return requestBytes(request) ?? encode();
}

/** Proposes a write after etcd's quota check (which raises the NOSPACE alarm when it fails). */
export async function proposeWrite(
  member: Member,
  kind: EntryKind,
  payload: Uint8Array,
  request: MvccRequest,
): Promise<unknown> {
  if (!member.store.quotaAvailable(request)) {
    member.raiseNoSpace();
    throw new EtcdError("NoSpace");
  }
  return member.propose(kind, payload, request);
}

/**
 * etcdserverpb.KV's handlers. They answer with the store's shapes (revisions as numbers), which
 * `kvServiceDefinition` writes with mvcc's response codec instead of ts-proto's bigint encoder.
 */
export function kvService(member: Member) {
  const withHeader = <T extends { header?: ResponseHeader | undefined }>(res: T): T => {
    res.header = member.header(res.header?.revision ?? member.store.revision);
    return res;
  };
  return {
    range: unary(async (req: etcdserverpb.RangeRequest) => {
      if (!req.serializable) {
        refuseLearner(member);
        await member.linearizableRead();
      }
      return withHeader((await member.store.range(rangeRequestFromApi(req))) as RangeResponse);
    }),
    rangeStream: (call: { emit(event: "error", status: { code: number; details: string }): void }) => {
      call.emit("error", { code: 12, details: "RangeStream is not implemented by this server" });
    },
    put: unary(async (req: etcdserverpb.PutRequest) => {
      refuseLearner(member);
      const put = putRequestFromApi(req);
      checkPutRequest(put);
      const payload = bytesOf(req, () => etcdserverpb.PutRequest.encode(req).finish());
      return withHeader((await proposeWrite(member, EntryKind.Put, payload, { put })) as PutResponse);
    }),
    deleteRange: unary(async (req: etcdserverpb.DeleteRangeRequest) => {
      refuseLearner(member);
      const deleteRange = deleteRangeRequestFromApi(req);
      checkDeleteRequest(deleteRange);
      const payload = bytesOf(req, () => etcdserverpb.DeleteRangeRequest.encode(req).finish());
      const res = await member.propose(EntryKind.DeleteRange, payload, { deleteRange });
      return withHeader(res as DeleteRangeResponse);
    }),
    txn: unary(async (req: etcdserverpb.TxnRequest) => {
      refuseLearner(member);
      const txn = txnRequestFromApi(req);
      checkTxnRequest(txn, member.config.maxTxnOps);
      const payload = bytesOf(req, () => etcdserverpb.TxnRequest.encode(req).finish());
      const res = await proposeWrite(member, EntryKind.Txn, payload, { txn });
      return withHeader(res as TxnResponse);
    }),
    compact: unary(async (req: etcdserverpb.CompactionRequest) => {
      refuseLearner(member);
      const payload = bytesOf(req, () => etcdserverpb.CompactionRequest.encode(req).finish());
      const res = (await member.propose(EntryKind.Compaction, payload, {
        compaction: compactionRequestFromApi(req),
      })) as CompactionResponse;
      // etcd's physical compaction answers once the old revisions are gone from the backend.
      if (req.physical) await member.store.compactionDone();
      return withHeader(res);
    }),
  };
}

/** etcdserverpb.KV as served here: writes keep their wire bytes, answers use mvcc's codec. */
export const kvServiceDefinition = encodingResponsesWith(
  keepingRequestBytes(etcdserverpb.KVService, ["put", "deleteRange", "txn", "compact"]),
  {
    range: encodeRangeResponse,
    put: encodePutResponse,
    deleteRange: encodeDeleteRangeResponse,
    txn: encodeTxnResponse,
    compact: encodeCompactionResponse,
  },
);
