// Snapshots in etcd 3.4's file format (a bbolt database + sha256 trailer): written from the
// store for Maintenance.Snapshot, read back by `raft-node snapshot status|restore`.
export { BboltFormatError, BboltReader } from "./bbolt-reader.js";
export { BboltWriter } from "./bbolt-writer.js";
export { BUCKETS, writeEtcdBackend } from "./etcd-backend.js";
export {
  formatStatus,
  openSnapshotFile,
  SHA256_SIZE,
  SnapshotFileError,
  snapshotStatus,
  writeBackendFile,
} from "./snapshot-file.js";
