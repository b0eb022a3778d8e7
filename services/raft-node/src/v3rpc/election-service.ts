// v3electionpb.Election (what `etcdctl elect` calls): leader election under `<name>/`, as etcd's
// concurrency.Election: the leader is the oldest key; proclaiming rewrites the leader's value
// only while it still leads.

import { etcdserverpb, type v3electionpb } from "@etcd-ts/api";
import { type ServerUnaryCall, type ServerWritableStream, type sendUnaryData, status } from "@grpc/grpc-js";
import { apiHeader, apiKeyValue } from "../mvcc/mod.js";
import type { EtcdServer } from "../server/mod.js";
import { callerOf } from "./caller.js";
import {
  enqueue,
  type KeyQueueServer,
  onBehalfOf,
  owner,
  prefixEnd,
  proposeTxn,
  queueKey,
  sessionLease,
  waitEvent,
  waitForTurn,
} from "./key-queue.js";
import { refuseLearner } from "./kv-service.js";
import { deleteKey } from "./lock-service.js";
import { toStatus, unary } from "./rpc-errors.js";

// The concurrency package's errors, which etcd's election service returns as they are (they
// are not etcdserver errors, so the client sees them with code UNKNOWN).
const NOT_LEADER = { code: status.UNKNOWN, details: "election: not leader" };
const NO_LEADER = { code: status.UNKNOWN, details: "election: no leader" };
// v3election's own check of Proclaim and Resign requests (ErrMissingLeaderKey).
const MISSING_LEADER_KEY = { code: status.UNKNOWN, details: '"leader" field must be provided' };

// Compare targets, not sort targets (where CREATE is 2).
const CREATE = etcdserverpb.Compare_CompareTarget.CREATE;

function prefixOf(name: Buffer): Buffer {
  return Buffer.concat([name, Buffer.from("/")]);
}

export function electionService(member: EtcdServer): v3electionpb.ElectionServer {
  const proclaim = async (as: KeyQueueServer, leader: v3electionpb.LeaderKey, value: Buffer) => {
    const res = await proposeTxn(
      as,
      etcdserverpb.TxnRequest.fromPartial({
        compare: [{ key: leader.key, target: CREATE, result: 0, createRevision: leader.rev }],
        success: [{ requestPut: { key: leader.key, value, lease: leader.lease } }],
      }),
    );
    if (!res.succeeded) throw NOT_LEADER;
    return res;
  };

  return {
    campaign: (
      call: ServerUnaryCall<v3electionpb.CampaignRequest, v3electionpb.CampaignResponse>,
      callback: sendUnaryData<v3electionpb.CampaignResponse>,
    ) => {
      const abort = new AbortController();
      call.on("cancelled", () => abort.abort());
      void (async () => {
        refuseLearner(member);
        const as = onBehalfOf(member, await callerOf(member, call));
        const { name, value } = call.request;
        const lease = await sessionLease(member, call.request.lease);
        const prefix = prefixOf(name);
        const mine = await enqueue(as, queueKey(prefix, lease), lease, value);
        const leader = { name, key: mine.key, rev: BigInt(mine.rev), lease };
        if (mine.existingValue !== undefined && !mine.existingValue.equals(value))
          await proclaim(as, leader, value);
        try {
          await waitForTurn(as, prefix, mine.rev, abort.signal);
        } catch (err) {
          await deleteKey(as, mine.key).catch(() => {});
          throw err;
        }
        return { header: apiHeader(member.header()), leader };
      })().then(
        (res) => callback(null, res),
        (err: unknown) => callback(toStatus(err)),
      );
    },
    proclaim: unary(async (req: v3electionpb.ProclaimRequest, call) => {
      refuseLearner(member);
      if (req.leader === undefined) throw MISSING_LEADER_KEY;
      const res = await proclaim(onBehalfOf(member, await callerOf(member, call)), req.leader, req.value);
      return { header: apiHeader(member.header(res.header?.revision)) };
    }),
    leader: unary(async (req: v3electionpb.LeaderRequest, call) => {
      refuseLearner(member);
      const res = await owner(onBehalfOf(member, await callerOf(member, call)), prefixOf(req.name));
      if (res.kvs.length === 0) throw NO_LEADER;
      return { header: apiHeader(member.header(res.header?.revision)), kv: apiKeyValue(res.kvs[0]!) };
    }),
    resign: unary(async (req: v3electionpb.ResignRequest, call) => {
      refuseLearner(member);
      const leader = req.leader;
      if (leader === undefined) throw MISSING_LEADER_KEY;
      const res = await proposeTxn(
        onBehalfOf(member, await callerOf(member, call)),
        etcdserverpb.TxnRequest.fromPartial({
          compare: [{ key: leader.key, target: CREATE, result: 0, createRevision: leader.rev }],
          success: [{ requestDeleteRange: { key: leader.key } }],
        }),
      );
      return { header: apiHeader(member.header(res.header?.revision)) };
    }),
    observe: (call: ServerWritableStream<v3electionpb.LeaderRequest, v3electionpb.LeaderResponse>) => {
      const abort = new AbortController();
      call.on("cancelled", () => abort.abort());
      call.on("close", () => abort.abort());
      const prefix = prefixOf(call.request.name);
      void (async () => {
        refuseLearner(member);
        const as = onBehalfOf(member, await callerOf(member, call));
        let sent: { key: string; mod: number } | undefined;
        while (!abort.signal.aborted) {
          const res = await owner(as, prefix);
          const kv = res.kvs[0];
          if (kv !== undefined && (sent?.key !== kv.key.toString("latin1") || sent.mod !== kv.modRevision)) {
            call.write({ header: apiHeader(member.header(res.header?.revision)), kv: apiKeyValue(kv) });
            sent = { key: kv.key.toString("latin1"), mod: kv.modRevision };
          }
          await waitEvent(as, prefix, prefixEnd(prefix), res.header!.revision + 1, abort.signal, () => true);
        }
      })().catch((err: unknown) => {
        if (!abort.signal.aborted) call.emit("error", toStatus(err));
      });
    },
  };
}
