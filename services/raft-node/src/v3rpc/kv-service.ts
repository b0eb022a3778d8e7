// etcdserverpb.KV: reads are served locally (after a ReadIndex round unless serializable);
// writes are validated here, as etcd's v3rpc does (request-validation.ts: shape, --max-txn-ops),
// checked against the quota, and proposed as the client's own bytes. Nothing is validated again
// at apply: a committed entry must give the same result on members with different flags.
import { decodePutRequest, EtcdError, etcdserverpb, MessageParts } from "@etcd-ts/api";
import {
  compactionRequestFromApi,
  deleteRangeRequestFromApi,
  type EncodedRangeResponse,
  encodeCompactionResponse,
  encodeDeleteRangeResponse,
  encodePutResponse,
  encodeRangeResponse,
  encodeTxnResponse,
  type HeldPart,
  putRequestFromApi,
  type ResponseHeader,
  rangeRequestFromApi,
  rangeResponseParts,
  txnRequestFromApi,
} from "../mvcc/mod.js";
import type { EtcdServer, QuotaAlarmer } from "../server/mod.js";
import { anonymousCall, callerOf, permittedRead } from "./caller.js";
import { FetchedMessage } from "./grpc-adapter.js";
import { encodingResponsesWith, requestBytes } from "./raw-requests.js";
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

/**
 * etcdserverpb.KV's handlers. Requests are converted to the store's shapes (mvcc/api-shapes.ts);
 * answers are the store's shapes, which `kvServiceDefinition` writes with mvcc's response codec
 * instead of ts-proto's bigint encoder (no bigint per key on a Range).
 */
export function kvService(member: EtcdServer) {
  const withHeader = <T extends { header?: ResponseHeader | undefined }>(res: T): T => {
    res.header = member.header(res.header?.revision);
    return res;
  };
  return {
    range: unary(async (req: etcdserverpb.RangeRequest, call) => {
      const range = rangeRequestFromApi(req);
      checkRangeRequest(range);
      if (!range.serializable) {
        refuseLearner(member);
        await member.linearizableRead(call.traceContext);
      }
      const caller = await callerOf(member, call);
      let read: EncodedRangeResponse<Buffer | HeldPart> | undefined;
      let res: EncodedRangeResponse<Buffer | HeldPart>;
      try {
        res = withHeader(
          await permittedRead(
            member,
            caller,
            () => member.isRangePermitted(caller, range.key, range.rangeEnd),
            async () => {
              read = await member.rangeEncoded(range);
              return read;
            },
          ),
        );
      } catch (err) {
        // Read, then refused (the auth revision moved meanwhile): its held chunks go.
        for (const p of read?.kvParts ?? []) if (!Buffer.isBuffer(p)) p.drop();
        throw err;
      }
      // Sent as its pieces (grpc-adapter.ts): a huge answer is never joined nor re-encoded, and
      // chunks held by the read threads come here as the socket takes them.
      const parts = rangeResponseParts(res);
      return parts.every((p): p is Buffer => Buffer.isBuffer(p))
        ? new MessageParts(parts)
        : new FetchedMessage(parts);
    }),
    rangeStream: (call: { emit(event: "error", status: { code: number; details: string }): void }) => {
      call.emit("error", { code: 12, details: "RangeStream is not implemented by this server" });
    },
    // Not async, and no promise for the caller when the call carries no identity (the usual
    // put): the proposal's promise is the call's only pending one (rpc-errors.ts's `unary`).
    put: unary((req: etcdserverpb.PutRequest, call) => {
      refuseLearner(member);
      const put = putRequestFromApi(req);
      checkPutRequest(put);
      checkQuota(member, { put });
      const raw = requestBytes(call);
      if (anonymousCall(call)) return member.put(put, raw, undefined, call.traceContext);
      return callerOf(member, call).then((caller) => member.put(put, raw, caller, call.traceContext));
    }, withHeader),
    deleteRange: unary(async (req: etcdserverpb.DeleteRangeRequest, call) => {
      refuseLearner(member);
      const deleteRange = deleteRangeRequestFromApi(req);
      checkDeleteRequest(deleteRange);
      return withHeader(
        await member.deleteRange(
          deleteRange,
          requestBytes(call),
          await callerOf(member, call),
          call.traceContext,
        ),
      );
    }),
    txn: unary(async (req: etcdserverpb.TxnRequest, call) => {
      refuseLearner(member);
      const txn = txnRequestFromApi(req);
      checkTxnRequest(txn, member.flags.maxTxnOps);
      checkQuota(member, { txn });
      const raw = requestBytes(call) ?? etcdserverpb.TxnRequest.encode(req).finish();
      return withHeader(await member.txn(txn, raw, await callerOf(member, call), call.traceContext));
    }),
    compact: unary(async (req: etcdserverpb.CompactionRequest, call) => {
      refuseLearner(member);
      return withHeader(
        await member.compact(compactionRequestFromApi(req), requestBytes(call), call.traceContext),
      );
    }),
  };
}

/** etcdserverpb.KV as served here: writes keep their wire bytes, answers use mvcc's codec. */
export const kvServiceDefinition = encodingResponsesWith(
  // Puts are decoded by @etcd-ts/api's decodePutRequest: the generated decoder's result, cheaper.
  // The handlers take a write's wire bytes from their call (requestBytes), to propose them as sent.
  {
    ...etcdserverpb.KVService,
    put: { ...etcdserverpb.KVService.put, requestDeserialize: decodePutRequest },
  },
  {
    range: encodeRangeResponse,
    put: encodePutResponse,
    deleteRange: encodeDeleteRangeResponse,
    txn: encodeTxnResponse,
    compact: encodeCompactionResponse,
  },
);
