// v3lockpb.Lock (what `etcdctl lock` calls): a mutex under `<name>/`, owned by the contender
// whose key was created first; the key carries the caller's lease, so the lock goes with it.

import { etcdserverpb, type v3lockpb } from "@etcd-ts/api";
import type { ServerUnaryCall, sendUnaryData } from "@grpc/grpc-js";
import { apiHeader, type DeleteRangeResponse, deleteRangeRequestFromApi } from "../mvcc/mod.js";
import type { EtcdServer } from "../server/mod.js";
import { callerOf } from "./caller.js";
import {
  enqueue,
  type KeyQueueServer,
  onBehalfOf,
  queueKey,
  sessionLease,
  waitForTurn,
} from "./key-queue.js";
import { refuseLearner } from "./kv-service.js";
import { toStatus, unary } from "./rpc-errors.js";

export function lockService(member: EtcdServer): v3lockpb.LockServer {
  return {
    lock: (
      call: ServerUnaryCall<v3lockpb.LockRequest, v3lockpb.LockResponse>,
      callback: sendUnaryData<v3lockpb.LockResponse>,
    ) => {
      const abort = new AbortController();
      call.on("cancelled", () => abort.abort());
      void (async () => {
        refuseLearner(member);
        const as = onBehalfOf(member, await callerOf(member, call));
        const prefix = Buffer.concat([call.request.name, Buffer.from("/")]);
        const lease = await sessionLease(member, call.request.lease);
        const mine = await enqueue(as, queueKey(prefix, lease), lease, Buffer.alloc(0));
        try {
          await waitForTurn(as, prefix, mine.rev, abort.signal);
        } catch (err) {
          // A contender that gives up leaves the queue, as etcd's Mutex.Lock does.
          await deleteKey(as, mine.key).catch(() => {});
          throw err;
        }
        return { header: apiHeader(member.header()), key: mine.key };
      })().then(
        (res) => callback(null, res),
        (err: unknown) => callback(toStatus(err)),
      );
    },
    unlock: unary(async (req: v3lockpb.UnlockRequest, call) => {
      refuseLearner(member);
      const res = await deleteKey(onBehalfOf(member, await callerOf(member, call)), req.key);
      return { header: apiHeader(member.header(res.header?.revision)) };
    }),
  };
}

export async function deleteKey(member: KeyQueueServer, key: Buffer): Promise<DeleteRangeResponse> {
  return member.deleteRange(deleteRangeRequestFromApi(etcdserverpb.DeleteRangeRequest.fromPartial({ key })));
}
