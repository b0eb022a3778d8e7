// Snapshots in etcd 3.4's file format (a bbolt database + sha256 trailer): written from the
// store for Maintenance.Snapshot, read back by `raft-node snapshot status|restore`.
export { keySplitAt, writeBackendFileOffThread } from "./backend-file-worker.js";
export { BboltFormatError, BboltReader, type BucketRoot } from "./bbolt-reader.js";
export { BboltWriter } from "./bbolt-writer.js";
export { BUCKETS, type Row, writeEtcdBackend } from "./etcd-backend.js";
export { EtcdDataDirError, type EtcdDataDirImport, importEtcdDataDir } from "./etcd-data-dir.js";
export { SNAPSHOT_SEND_YIELD_FACTOR, WriteLoad, WritePacer } from "./paced-view.js";
export { type RestoreResult, restoreSnapshot } from "./restore.js";
export { runSnapshotCommand } from "./snapshot-command.js";
export {
  formatStatus,
  type OpenedSnapshot,
  openSnapshotFile,
  replaceSnapshotBuckets,
  SHA256_SIZE,
  SnapshotFileError,
  type SnapshotSink,
  sendBackendFile,
  snapshotStatus,
  writeBackendFile,
} from "./snapshot-file.js";
