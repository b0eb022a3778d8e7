// Backups: snapshots (etcd's file format) pulled from a follower into a local directory or S3,
// deltas from a watch between them, verified, listed, kept to a retention, and restored into a
// new cluster's data dirs, to the full backup's revision or a later one.

export {
  BackupCatalog,
  type BackupEntry,
  type DeltaEntry,
  deltaKey,
  type Progress,
  SnapshotSourceError,
} from "./backup-catalog.js";
export { type CommandOutput, progressLine, runBackupCommand } from "./backup-command.js";
export {
  type BackupResult,
  DEFAULT_RETRIES,
  type DeltaResult,
  type RetrySettings,
  takeBackup,
  takeDelta,
  type Verified,
  verifyBackup,
} from "./backup-job.js";
export { BackupMetrics } from "./backup-metrics.js";
export { type BackupServer, type BackupServerOptions, startBackupServer } from "./backup-server.js";
export { type DeltaEvent, decodeEvent, encodeEvent, replayTxn, revisionsBetween } from "./delta-events.js";
export { DirectoryStore } from "./directory-store.js";
export { MemberAccess, type MemberAccessOptions } from "./member-access.js";
export { BackupError, type ObjectStore, type StoredObject, StoreUnavailableError } from "./object-store.js";
export { type PointInTimeResult, pointInTimeSnapshot } from "./point-in-time.js";
export { backupId, backupTime, beyondRetention, isoWeek, type RetentionPolicy } from "./retention.js";
export { backoffDelay, type RetryOptions, withRetries } from "./retry.js";
export { S3Store, type S3StoreOptions, s3ClientConfigFromEnv } from "./s3-store.js";
export {
  type MemberStatus,
  memberStatus,
  pickSource,
  snapshotStream,
  watchEvents,
} from "./snapshot-source.js";
