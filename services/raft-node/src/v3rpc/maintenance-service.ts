// etcdserverpb.Maintenance: alarms, status, hashes, defragmentation, leader transfer, and the
// snapshot stream `etcdctl snapshot save` reads: etcd 3.4's backend as a bbolt file + sha256.
import type { EventEmitter } from "node:events";
import { EtcdError, etcdserverpb, MessageParts, untranslatedAuthError } from "@etcd-ts/api";
import type { ServerWritableStream } from "@grpc/grpc-js";
import { AlarmAction, AlarmType, alarmRequestFromApi, apiHashKV, apiHeader } from "../mvcc/mod.js";
import { type EtcdServer, SERVER_VERSION } from "../server/mod.js";
import { SHA256_SIZE } from "../snapshot/mod.js";
import { type CallIdentity, callerOf } from "./caller.js";
import { encodedWriter } from "./grpc-adapter.js";
import { refuseLearner } from "./kv-service.js";
import { toStatus, unary } from "./rpc-errors.js";

const NO_BYTES = Buffer.alloc(0);

/** Resolves once the call can take more, or is cancelled (then no 'drain' comes). */
function drained(call: EventEmitter): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off("drain", done);
      call.off("cancelled", done);
      resolve();
    };
    call.on("drain", done);
    call.on("cancelled", done);
  });
}

/**
 * etcd 3.4's authMaintenanceServer.isAuthenticated: root only once auth is on, its refusals in
 * the auth package's words and code 2 (`auth: permission denied`), as etcdctl shows them.
 */
async function checkAdmin(member: EtcdServer, call: CallIdentity): Promise<void> {
  try {
    member.isAdminPermitted(await callerOf(member, call));
  } catch (err) {
    throw untranslatedAuthError(err);
  }
}

export function alarmText(memberId: bigint, alarm: number): string {
  const name = alarm === AlarmType.NOSPACE ? "NOSPACE" : alarm === AlarmType.CORRUPT ? "CORRUPT" : "NONE";
  return `memberID:${memberId} alarm:${name} `;
}

export function maintenanceService(member: EtcdServer): etcdserverpb.MaintenanceServer {
  return {
    alarm: unary(async (req: etcdserverpb.AlarmRequest, call) => {
      refuseLearner(member);
      // Every Alarm action is a Raft request in etcd 3.4, so its token is read: a bad one is refused.
      await callerOf(member, call);
      // No header: etcd 3.4's maintenance server returns the applier's answer as it is (3.5
      // added one); `etcdctl alarm list -w json` prints {} on an alarm-free etcd 3.4.
      if (req.action === AlarmAction.GET) return { alarms: member.alarms(req.alarm) };
      const res = await member.alarm(alarmRequestFromApi(req));
      return { alarms: res.alarms };
    }),
    status: unary(async () => {
      const status = member.status();
      return {
        header: apiHeader(member.header()),
        version: SERVER_VERSION,
        dbSize: BigInt(status.dbSize),
        leader: member.leaderId,
        raftIndex: BigInt(status.raftIndex),
        raftTerm: BigInt(status.raftTerm),
        raftAppliedIndex: BigInt(status.raftAppliedIndex),
        errors: member.alarms().map((a) => alarmText(a.memberID, a.alarm)),
        dbSizeInUse: BigInt(status.dbSizeInUse),
        isLearner: member.isLearner(),
        storageVersion: "",
        dbSizeQuota: BigInt(status.dbSizeQuota),
      };
    }),
    // etcd's authMaintenanceServer: defragment, hash, hashKV and snapshot are root's once auth
    // is on (status and move-leader are not checked in etcd 3.4).
    defragment: unary(async (_req: unknown, call) => {
      await checkAdmin(member, call);
      refuseLearner(member);
      await member.defragment();
      return { header: apiHeader(member.header()) };
    }),
    hash: unary(async (_req: unknown, call) => {
      await checkAdmin(member, call);
      refuseLearner(member);
      const { hash, revision } = await member.hash();
      return { header: apiHeader(member.header(revision)), hash };
    }),
    hashKv: unary(async (req: etcdserverpb.HashKVRequest, call) => {
      await checkAdmin(member, call);
      refuseLearner(member);
      const res = await member.hashKV(Number(req.revision));
      return apiHashKV(res, member.header(res.header?.revision));
    }),
    moveLeader: unary(async (req: etcdserverpb.MoveLeaderRequest) => {
      refuseLearner(member);
      const moved = await member.moveLeader(req.targetID, 5000);
      if (!moved) throw new EtcdError("Timeout");
      return { header: apiHeader(member.header()) };
    }),
    downgrade: unary(async () => {
      throw { code: 12, details: "Downgrade is not implemented by this server" };
    }),
    snapshot: (call: ServerWritableStream<etcdserverpb.SnapshotRequest, etcdserverpb.SnapshotResponse>) => {
      void (async () => {
        await checkAdmin(member, call);
        refuseLearner(member);
        const out = encodedWriter(call);
        let remaining = 0;
        const send = async (blob: Buffer) => {
          // A client gone mid-stream sends no 'drain': stop (and remove the file).
          if (call.cancelled) throw new EtcdError("RequestCanceled");
          remaining -= blob.length;
          // SnapshotResponse with the blob field (3) appended after the others: protobuf
          // decoders take fields in any order, and the blob goes out as read, uncopied.
          const head = etcdserverpb.SnapshotResponse.encode({
            header: apiHeader(member.header()),
            remainingBytes: BigInt(remaining),
            blob: NO_BYTES,
            version: "",
          })
            .uint32(26)
            .uint32(blob.length)
            .finish();
          if (!out.writeEncoded(new MessageParts([head, blob]))) await drained(call);
        };
        const { sha256 } = await member.streamSnapshot({
          begin: (size) => {
            remaining = size + SHA256_SIZE;
          },
          write: send,
        });
        // etcd appends the sha256 of everything before it, for `snapshot restore` to verify.
        await send(sha256);
        call.end();
      })().catch((err: unknown) => call.emit("error", toStatus(err)));
    },
  };
}
