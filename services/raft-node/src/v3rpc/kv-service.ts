// etcdserverpb.KV: reads are served locally (after a ReadIndex round unless serializable);
// writes are validated, checked against the quota, and proposed as the client's own bytes.
import { EtcdError, etcdserverpb } from "@etcd-ts/api";
import { checkDeleteRequest, checkPutRequest, checkTxnRequest, type MvccRequest } from "../mvcc/mod.js";
import { EntryKind } from "../server/entry-envelope.js";
import type { Member } from "../server/member.js";
import { requestBytes } from "./raw-requests.js";
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

export function kvService(member: Member): etcdserverpb.KVServer {
  const withHeader = <T extends { header?: etcdserverpb.ResponseHeader | undefined }>(res: T): T => {
    res.header = member.header(res.header?.revision ?? member.store.revision);
    return res;
  };
  return {
    range: unary(async (req: etcdserverpb.RangeRequest) => {
      if (!req.serializable) {
        refuseLearner(member);
        await member.linearizableRead();
      }
      return withHeader((await member.store.range(req)) as etcdserverpb.RangeResponse);
    }),
    rangeStream: (call) => {
      call.emit("error", { code: 12, details: "RangeStream is not implemented by this server" });
    },
    put: unary(async (req: etcdserverpb.PutRequest) => {
      refuseLearner(member);
      checkPutRequest(req);
      const payload = bytesOf(req, () => etcdserverpb.PutRequest.encode(req).finish());
      return withHeader(
        (await proposeWrite(member, EntryKind.Put, payload, { put: req })) as etcdserverpb.PutResponse,
      );
    }),
    deleteRange: unary(async (req: etcdserverpb.DeleteRangeRequest) => {
      refuseLearner(member);
      checkDeleteRequest(req);
      const payload = bytesOf(req, () => etcdserverpb.DeleteRangeRequest.encode(req).finish());
      const res = await member.propose(EntryKind.DeleteRange, payload, { deleteRange: req });
      return withHeader(res as etcdserverpb.DeleteRangeResponse);
    }),
    txn: unary(async (req: etcdserverpb.TxnRequest) => {
      refuseLearner(member);
      checkTxnRequest(req, member.config.maxTxnOps);
      const payload = bytesOf(req, () => etcdserverpb.TxnRequest.encode(req).finish());
      const res = await proposeWrite(member, EntryKind.Txn, payload, { txn: req });
      return withHeader(res as etcdserverpb.TxnResponse);
    }),
    compact: unary(async (req: etcdserverpb.CompactionRequest) => {
      refuseLearner(member);
      const payload = bytesOf(req, () => etcdserverpb.CompactionRequest.encode(req).finish());
      const res = (await member.propose(EntryKind.Compaction, payload, {
        compaction: req,
      })) as etcdserverpb.CompactionResponse;
      // etcd's physical compaction answers once the old revisions are gone from the backend.
      if (req.physical) await member.store.compactionDone();
      return withHeader(res);
    }),
  };
}
