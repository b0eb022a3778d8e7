// Backups: snapshots (etcd's file format) pulled from a follower into a directory, verified,
// listed, kept to a retention, and restored into a new cluster's data dirs.
export { backupId, type CommandOutput, progressLine, runBackupCommand } from "./backup-command.js";
export {
  type BackupEntry,
  BackupError,
  beyondRetention,
  DirectoryStore,
  type Progress,
} from "./directory-store.js";
export { type MemberStatus, memberStatus, pickSource, snapshotStream } from "./snapshot-source.js";
