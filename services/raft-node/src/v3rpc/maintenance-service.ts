// etcdserverpb.Maintenance: alarms, status, hashes, defragmentation, leader transfer, and the
// snapshot stream `etcdctl snapshot save` reads: etcd 3.4's backend as a bbolt file + sha256.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { EtcdError, type etcdserverpb } from "@etcd-ts/api";
import type { ServerWritableStream } from "@grpc/grpc-js";
import { AlarmAction, AlarmType } from "../mvcc/mod.js";
import { CLUSTER_VERSION, type Member, memberCodec, SERVER_VERSION } from "../server/member.js";
import { SHA256_SIZE, writeBackendFile } from "../snapshot/mod.js";
import { refuseLearner } from "./kv-service.js";
import { toStatus, unary } from "./rpc-errors.js";

// etcd sends 32 KiB messages; bigger ones cost fewer turns, and clients accept 4 MiB by default.
const SNAPSHOT_CHUNK = 1024 * 1024;

export function alarmText(memberId: number, alarm: number): string {
  const name = alarm === AlarmType.NOSPACE ? "NOSPACE" : alarm === AlarmType.CORRUPT ? "CORRUPT" : "NONE";
  return `memberID:${memberId} alarm:${name} `;
}

/** Snapshot files of an earlier process (killed mid-stream) are garbage; ours carry our pid. */
async function removeStaleSnapshotFiles(dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    const pid = /^client-(\d+)-\d+\.(db|image)$/.exec(name)?.[1];
    if (pid !== undefined && Number(pid) !== process.pid) await rm(join(dir, name), { force: true });
  }
}

export function maintenanceService(member: Member): etcdserverpb.MaintenanceServer {
  let snapshotSeq = 0;
  const snapshotDir = join(member.config.dataDir, "member", "snap");
  void removeStaleSnapshotFiles(snapshotDir);
  return {
    alarm: unary(async (req: etcdserverpb.AlarmRequest) => {
      refuseLearner(member);
      if (req.action === AlarmAction.GET) {
        return { header: member.header(), alarms: member.store.alarms(req.alarm) };
      }
      const res = (await member.proposeAlarm(req)) as etcdserverpb.AlarmResponse;
      return { header: member.header(), alarms: res.alarms };
    }),
    status: unary(async () => {
      const raft = member.raftStatus();
      return {
        header: member.header(),
        version: SERVER_VERSION,
        dbSize: member.store.backendSize,
        leader: member.leaderId,
        raftIndex: raft.commit,
        raftTerm: raft.term,
        raftAppliedIndex: member.applied,
        errors: member.store.alarms().map((a) => alarmText(a.memberID, a.alarm)),
        dbSizeInUse: member.store.backendSizeInUse,
        isLearner: member.isLearner(),
        storageVersion: "",
        dbSizeQuota: member.store.quota,
      };
    }),
    defragment: unary(async () => {
      refuseLearner(member);
      await member.store.defragment();
      return { header: member.header() };
    }),
    hash: unary(async () => {
      refuseLearner(member);
      const { hash, revision } = await member.store.hash();
      return { header: member.header(revision), hash };
    }),
    hashKv: unary(async (req: etcdserverpb.HashKVRequest) => {
      refuseLearner(member);
      const res = await member.store.hashKV(req.revision);
      return {
        header: member.header(res.header?.revision),
        hash: res.hash,
        compactRevision: res.compactRevision,
        hashRevision: res.hashRevision,
      };
    }),
    moveLeader: unary(async (req: etcdserverpb.MoveLeaderRequest) => {
      refuseLearner(member);
      if (!member.isLeader) throw new EtcdError("NotLeader");
      const target = member.members.get(req.targetID);
      if (target === undefined || target.isLearner) throw new EtcdError("BadLeaderTransferee");
      if (req.targetID !== member.id) {
        const moved = await member.transferLeadership(req.targetID, 5000);
        if (!moved) throw new EtcdError("Timeout");
      }
      return { header: member.header() };
    }),
    downgrade: unary(async () => {
      throw { code: 12, details: "Downgrade is not implemented by this server" };
    }),
    snapshot: (call: ServerWritableStream<etcdserverpb.SnapshotRequest, etcdserverpb.SnapshotResponse>) => {
      void (async () => {
        refuseLearner(member);
        const path = join(snapshotDir, `client-${process.pid}-${++snapshotSeq}.db`);
        const view = await member.store.openView();
        try {
          let size: number;
          try {
            size = await writeBackendFile(view, { memberCodec, clusterVersion: CLUSTER_VERSION }, path);
          } finally {
            view.close();
          }
          const sha = createHash("sha256");
          let remaining = size + SHA256_SIZE;
          const send = async (blob: Buffer) => {
            remaining -= blob.length;
            const ok = call.write({ header: member.header(), remainingBytes: remaining, blob, version: "" });
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
