// etcdserverpb.Maintenance: alarms, status, hashes, defragmentation, leader transfer, and the
// snapshot stream `etcdctl snapshot save` reads: etcd 3.4's backend as a bbolt file + sha256.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { rm } from "node:fs/promises";
import { EtcdError, type etcdserverpb } from "@etcd-ts/api";
import type { ServerWritableStream } from "@grpc/grpc-js";
import { AlarmAction, AlarmType, alarmRequestFromApi, apiHeader } from "../mvcc/mod.js";
import { type EtcdServer, SERVER_VERSION } from "../server/mod.js";
import { SHA256_SIZE } from "../snapshot/mod.js";
import { callerOf } from "./caller.js";
import { refuseLearner } from "./kv-service.js";
import { toStatus, unary } from "./rpc-errors.js";

// etcd sends 32 KiB messages; bigger ones cost fewer turns, and clients accept 4 MiB by default.
const SNAPSHOT_CHUNK = 1024 * 1024;

export function alarmText(memberId: bigint, alarm: number): string {
  const name = alarm === AlarmType.NOSPACE ? "NOSPACE" : alarm === AlarmType.CORRUPT ? "CORRUPT" : "NONE";
  return `memberID:${memberId} alarm:${name} `;
}

export function maintenanceService(member: EtcdServer): etcdserverpb.MaintenanceServer {
  let snapshotSeq = 0;
  return {
    alarm: unary(async (req: etcdserverpb.AlarmRequest) => {
      refuseLearner(member);
      if (req.action === AlarmAction.GET) {
        return { header: apiHeader(member.header()), alarms: member.alarms(req.alarm) };
      }
      const res = await member.alarm(alarmRequestFromApi(req));
      return { header: apiHeader(member.header()), alarms: res.alarms };
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
      member.isAdminPermitted(await callerOf(member, call));
      refuseLearner(member);
      await member.defragment();
      return { header: apiHeader(member.header()) };
    }),
    hash: unary(async (_req: unknown, call) => {
      member.isAdminPermitted(await callerOf(member, call));
      refuseLearner(member);
      const { hash, revision } = await member.hash();
      return { header: apiHeader(member.header(revision)), hash };
    }),
    hashKv: unary(async (req: etcdserverpb.HashKVRequest, call) => {
      member.isAdminPermitted(await callerOf(member, call));
      refuseLearner(member);
      const res = await member.hashKV(Number(req.revision));
      return {
        header: apiHeader(member.header(res.header?.revision)),
        hash: res.hash,
        compactRevision: BigInt(res.compactRevision),
        hashRevision: BigInt(res.hashRevision),
      };
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
        member.isAdminPermitted(await callerOf(member, call));
        refuseLearner(member);
        const { path, size } = await member.writeSnapshotFile(`client-${process.pid}-${++snapshotSeq}.db`);
        try {
          const sha = createHash("sha256");
          let remaining = size + SHA256_SIZE;
          const send = async (blob: Buffer) => {
            remaining -= blob.length;
            const ok = call.write({
              header: apiHeader(member.header()),
              remainingBytes: BigInt(remaining),
              blob,
              version: "",
            });
            if (!ok) await new Promise((resolve) => call.once("drain", resolve));
          };
          for await (const chunk of createReadStream(path, { highWaterMark: SNAPSHOT_CHUNK })) {
            sha.update(chunk as Buffer);
            await send(chunk as Buffer);
          }
          // etcd appends the sha256 of everything before it, for `snapshot restore` to verify.
          await send(sha.digest());
          call.end();
        } finally {
          await rm(path, { force: true });
        }
      })().catch((err: unknown) => call.emit("error", toStatus(err)));
    },
  };
}
