// The public surface of @etcd-ts/raft-node: the member itself (for embedding and in-process
// tests), its configuration from etcd's flags, snapshot files in etcd's format, and the launcher
// of real member processes.
export {
  ConfigError,
  FLAGS,
  type MemberConfig,
  memberConfig,
  parseFlags,
} from "./config/flags.js";
export { decodeLeaseRecord, encodeLeaseRecord } from "./lease/mod.js";
export { clusterIdFor, formatId, memberIdFor } from "./membership/member-id.js";
export { CLUSTER_VERSION, type EtcdServer, Member, type MemberEvents, SERVER_VERSION } from "./server/mod.js";
export {
  BUCKETS,
  type OpenedSnapshot,
  openSnapshotFile,
  type RestoreResult,
  type Row as SnapshotRow,
  replaceSnapshotBuckets,
  restoreSnapshot,
  runSnapshotCommand,
  SnapshotFileError,
  snapshotStatus,
} from "./snapshot/mod.js";
export {
  addressOf,
  LocalCluster,
  type LocalClusterOptions,
  type MemberExit,
  type MemberProcess,
  startMemberProcess,
} from "./testing/local-cluster.js";
export { ClientServer } from "./v3rpc/client-server.js";
