// The write-ahead log and snapshot files of a raft-node member.

export type { SnapshotRef } from "./log-replay.js";
export type { TornTail } from "./segment-scan.js";
export {
  type BrokenSnapshot,
  type LoadedSnapshot,
  type SnapshotFileRef,
  Snapshotter,
  type SnapshotterOptions,
} from "./snapshotter.js";
export {
  Wal,
  type WalCreateOptions,
  type WalLogger,
  type WalOpenOptions,
  type WalOptions,
  type WalRecovery,
  type WalStats,
} from "./wal.js";
export { WalCorruptionError, WalFailedError, WalNotFoundError } from "./wal-errors.js";
