// Backups: snapshots (etcd's file format) pulled from a follower into a directory, verified,
// listed, kept to a retention, and restored into a new cluster's data dirs.
export { type CommandOutput, progressLine, runBackupCommand } from "./backup-command.js";
export { type BackupResult, backupId, takeBackup, type Verified, verifyBackup } from "./backup-job.js";
export { type BackupServer, type BackupServerOptions, startBackupServer } from "./backup-server.js";
export {
  type BackupEntry,
  BackupError,
  beyondRetention,
  DirectoryStore,
  type Progress,
} from "./directory-store.js";
export { type MemberStatus, memberStatus, pickSource, snapshotStream } from "./snapshot-source.js";
