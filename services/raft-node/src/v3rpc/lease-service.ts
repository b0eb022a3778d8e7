// etcdserverpb.Lease. Grant and revoke go through Raft; keep-alive and time-to-live are the
// leader's (only its lessor runs the clocks), so a follower forwards them to the leader's
// client URL as etcd does.

import { EtcdError, type etcdserverpb, isEtcdError } from "@etcd-ts/api";
import { type ClientDuplexStream, Metadata, type ServerDuplexStream } from "@grpc/grpc-js";
import { apiHeader } from "../mvcc/mod.js";
import type { EtcdServer } from "../server/mod.js";
import { callerOf } from "./caller.js";
import { checkQuota, refuseLearner } from "./kv-service.js";
import type { LeaderClients } from "./leader-clients.js";
import { requestBytes } from "./raw-requests.js";
import { toStatus, unary } from "./rpc-errors.js";

export function leaseService(member: EtcdServer, leader: LeaderClients): etcdserverpb.LeaseServer {
  const timeToLiveOnLeader = (
    req: etcdserverpb.LeaseTimeToLiveRequest,
  ): etcdserverpb.LeaseTimeToLiveResponse => {
    try {
      const ttl = member.leaseTimeToLive(req.ID, req.keys);
      return {
        header: apiHeader(member.header()),
        ID: ttl.id,
        TTL: BigInt(ttl.ttl),
        grantedTTL: BigInt(ttl.grantedTtl),
        keys: ttl.keys,
      };
    } catch (err) {
      // etcd answers a missing lease with TTL -1, not an error.
      if (isEtcdError(err, "LeaseNotFound"))
        return { header: apiHeader(member.header()), ID: req.ID, TTL: -1n, grantedTTL: 0n, keys: [] };
      throw err;
    }
  };

  return {
    leaseGrant: unary(async (req: etcdserverpb.LeaseGrantRequest, call) => {
      refuseLearner(member);
      // Number() keeps a TTL beyond etcd's MaxLeaseTTL too large, as etcd answers it.
      const grant = { ID: req.ID === 0n ? member.nextLeaseId() : req.ID, TTL: Number(req.TTL) };
      checkQuota(member, { leaseGrant: grant });
      // etcd reads the token of every request it proposes (raftRequestOnce): a bad one is refused
      // even where no permission is checked.
      await callerOf(member, call);
      // A grant without an ID gets one here, so the client's bytes are not what is proposed.
      const applied = await member.leaseGrant(
        grant,
        req.ID === 0n ? undefined : requestBytes(call),
        call.traceContext,
      );
      return { header: apiHeader(member.header()), ID: applied.id, TTL: BigInt(applied.ttl), error: "" };
    }),
    leaseRevoke: unary(async (req: etcdserverpb.LeaseRevokeRequest, call) => {
      refuseLearner(member);
      if (!member.leaseExists(req.ID)) throw new EtcdError("LeaseNotFound");
      const applied = await member.leaseRevoke(
        req.ID,
        requestBytes(call),
        await callerOf(member, call),
        call.traceContext,
      );
      return { header: apiHeader(member.header(applied.revision)) };
    }),
    leaseTimeToLive: unary(async (req: etcdserverpb.LeaseTimeToLiveRequest) => {
      refuseLearner(member);
      if (member.isLeader) return timeToLiveOnLeader(req);
      const client = leader.leaseClient();
      return new Promise<etcdserverpb.LeaseTimeToLiveResponse>((resolve, reject) =>
        client.leaseTimeToLive(req, new Metadata(), { deadline: Date.now() + 5000 }, (err, res) =>
          err ? reject(err) : resolve(res),
        ),
      );
    }),
    leaseLeases: unary(async () => {
      refuseLearner(member);
      return { header: apiHeader(member.header()), leases: member.leases().map((ID) => ({ ID })) };
    }),
    leaseKeepAlive: (
      call: ServerDuplexStream<etcdserverpb.LeaseKeepAliveRequest, etcdserverpb.LeaseKeepAliveResponse>,
    ) => {
      if (member.isLearner()) {
        call.emit("error", toStatus(new EtcdError("LearnerNotSupported")));
        return;
      }
      let forward:
        | ClientDuplexStream<etcdserverpb.LeaseKeepAliveRequest, etcdserverpb.LeaseKeepAliveResponse>
        | undefined;
      let forwardLeader = 0n;
      let open = true;
      let renewed: Promise<void> = Promise.resolve();
      const closeForward = () => {
        forward?.end();
        forward = undefined;
      };
      call.on("data", (req: etcdserverpb.LeaseKeepAliveRequest) => {
        if (!open) return;
        if (member.isLeader) {
          closeForward();
          // A renew may wait for its checkpoint to commit; answers keep the requests' order.
          renewed = renewed.then(async () => {
            let ttl = 0;
            try {
              ttl = await member.leaseRenew(req.ID);
            } catch (err) {
              // A missing (or just expired) lease is answered with TTL 0, as etcd does.
              if (!isEtcdError(err, "LeaseNotFound")) {
                if (open) call.emit("error", toStatus(err));
                open = false;
                return;
              }
            }
            if (open) call.write({ header: apiHeader(member.header()), ID: req.ID, TTL: BigInt(ttl) });
          });
          return;
        }
        try {
          if (forward === undefined || forwardLeader !== member.leaderId) {
            closeForward();
            forwardLeader = member.leaderId;
            if (forwardLeader === 0n) throw new EtcdError("NoLeader");
            const stream = leader.leaseClient().leaseKeepAlive();
            stream.on("data", (res: etcdserverpb.LeaseKeepAliveResponse) => {
              if (open) call.write(res);
            });
            stream.on("error", () => {
              if (forward === stream) forward = undefined;
            });
            stream.on("end", () => {
              if (forward === stream) forward = undefined;
            });
            forward = stream;
          }
          forward.write(req);
        } catch (err) {
          open = false;
          call.emit("error", toStatus(err));
        }
      });
      const finish = () => {
        open = false;
        closeForward();
      };
      call.on("end", () => {
        finish();
        call.end();
      });
      call.on("cancelled", finish);
      call.on("error", finish);
    },
  };
}
