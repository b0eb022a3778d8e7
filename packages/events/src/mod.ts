// NATS control-plane events between etcd-ts services: the subjects and their payloads, a
// connection that never blocks or fails its caller, and a real nats-server for tests.
export {
  ControlPlane,
  type ControlPlaneCounters,
  type ControlPlaneLog,
  type ControlPlaneOptions,
  natsUrlProblem,
} from "./control-plane.js";
export { registerControlPlaneMetrics } from "./control-plane-metrics.js";
export { NatsServerProcess, natsServerBinary } from "./nats-server.js";
export {
  type AlarmsChanged,
  ANY_CLUSTER,
  type AuthChanged,
  type AuthKeysRotated,
  type BackupCompleted,
  type BackupFailed,
  type BackupKind,
  type BackupNowReply,
  type BackupNowRequest,
  type BackupStarted,
  type BackupTrigger,
  type ClusterMember,
  type Compacted,
  decodeEvent,
  encodeEvent,
  type LeaderElected,
  type LoginOutcome,
  type MembersChanged,
  type Topic,
  topics,
} from "./topics.js";
