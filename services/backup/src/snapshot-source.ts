// Where a backup comes from: Maintenance.Snapshot of a follower, so the leader keeps its disk and
// CPU for the cluster; the leader only when no follower answers.
import { etcdserverpb } from "@etcd-ts/api";
import type { TraceContext } from "@etcd-ts/telemetry";
import { credentials, Metadata } from "@grpc/grpc-js";
import { withTraceparent } from "./backup-tracing.js";

export interface MemberStatus {
  endpoint: string;
  /** undefined: the member did not answer. */
  memberId?: string;
  leaderId?: string;
  isLearner?: boolean;
}

/** A healthy voting follower if there is one, else the leader (learners refuse Maintenance.Snapshot). */
export function pickSource(statuses: readonly MemberStatus[]): MemberStatus | undefined {
  const healthy = statuses.filter(
    (s) => s.memberId !== undefined && s.leaderId !== undefined && s.leaderId !== "0" && !s.isLearner,
  );
  return healthy.find((s) => s.memberId !== s.leaderId) ?? healthy.find((s) => s.memberId === s.leaderId);
}

function client(endpoint: string): etcdserverpb.MaintenanceClient {
  return new etcdserverpb.MaintenanceClient(endpoint, credentials.createInsecure(), {
    "grpc.max_receive_message_length": 8 * 1024 * 1024,
  });
}

export async function memberStatus(endpoint: string, timeoutMs = 3000): Promise<MemberStatus> {
  const c = client(endpoint);
  try {
    const res = await new Promise<etcdserverpb.StatusResponse>((resolve, reject) =>
      c.status({}, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, r) =>
        err ? reject(err) : resolve(r),
      ),
    );
    return {
      endpoint,
      memberId: String(res.header?.memberId ?? ""),
      leaderId: String(res.leader),
      isLearner: res.isLearner,
    };
  } catch {
    return { endpoint };
  } finally {
    c.close();
  }
}

/** The snapshot stream of `endpoint`, message by message; `trace`: the backup's span context. */
export async function* snapshotStream(
  endpoint: string,
  trace?: TraceContext,
): AsyncGenerator<{ blob: Buffer; remaining: number }> {
  const c = client(endpoint);
  const call = c.snapshot({}, withTraceparent(new Metadata(), trace));
  try {
    for await (const message of call as AsyncIterable<etcdserverpb.SnapshotResponse>) {
      yield { blob: Buffer.from(message.blob), remaining: Number(message.remainingBytes) };
    }
  } finally {
    call.cancel();
    c.close();
  }
}
