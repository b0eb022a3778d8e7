// etcdserverpb.KV: reads are served locally (after a ReadIndex round unless serializable);
// writes are validated here, as etcd's v3rpc does (request-validation.ts: shape, --max-txn-ops),
// checked against the quota, and proposed as the client's own bytes. Nothing is validated again
// at apply: a committed entry must give the same result on members with different flags.
import { EtcdError, type etcdserverpb } from "@etcd-ts/api";
import type { EtcdServer, QuotaAlarmer } from "../server/mod.js";
import { callerOf, permittedRead } from "./caller.js";
import { requestBytes } from "./raw-requests.js";
import {
  checkDeleteRequest,
  checkPutRequest,
  checkRangeRequest,
  checkTxnRequest,
} from "./request-validation.js";
import { unary } from "./rpc-errors.js";

export function refuseLearner(member: EtcdServer): void {
  if (member.isLearner()) throw new EtcdError("LearnerNotSupported");
}

/** etcd's quotaKVServer check before proposing a write; a failure raises the NOSPACE alarm. */
export function checkQuota(
  member: QuotaAlarmer,
  request: Parameters<QuotaAlarmer["quotaAvailable"]>[0],
): void {
  if (!member.quotaAvailable(request)) {
    member.raiseNoSpace();
    throw new EtcdError("NoSpace");
  }
}

export function kvService(member: EtcdServer): etcdserverpb.KVServer {
  const withHeader = <T extends { header?: etcdserverpb.ResponseHeader | undefined }>(res: T): T => {
    res.header = member.header(res.header?.revision);
    return res;
  };
  return {
    range: unary(async (req: etcdserverpb.RangeRequest, call) => {
      checkRangeRequest(req);
      if (!req.serializable) {
        refuseLearner(member);
        await member.linearizableRead();
      }
      const caller = await callerOf(member, call.metadata);
      return withHeader(
        await permittedRead(
          member,
          caller,
          () => member.isRangePermitted(caller, req.key, req.rangeEnd),
          () => member.range(req),
        ),
      );
    }),
    rangeStream: (call) => {
      call.emit("error", { code: 12, details: "RangeStream is not implemented by this server" });
    },
    put: unary(async (req: etcdserverpb.PutRequest, call) => {
      refuseLearner(member);
      checkPutRequest(req);
      checkQuota(member, { put: req });
      return withHeader(await member.put(req, requestBytes(req), await callerOf(member, call.metadata)));
    }),
    deleteRange: unary(async (req: etcdserverpb.DeleteRangeRequest, call) => {
      refuseLearner(member);
      checkDeleteRequest(req);
      return withHeader(
        await member.deleteRange(req, requestBytes(req), await callerOf(member, call.metadata)),
      );
    }),
    txn: unary(async (req: etcdserverpb.TxnRequest, call) => {
      refuseLearner(member);
      checkTxnRequest(req, member.flags.maxTxnOps);
      checkQuota(member, { txn: req });
      return withHeader(await member.txn(req, requestBytes(req), await callerOf(member, call.metadata)));
    }),
    compact: unary(async (req: etcdserverpb.CompactionRequest) => {
      refuseLearner(member);
      return withHeader(await member.compact(req, requestBytes(req)));
    }),
  };
}
