// The write-ahead log and snapshot files of a raft-node member.
//
// How a member is expected to drive them (the order is what makes a crash at any point
// recoverable):
//
// Start-up
//   if (!(await Wal.exists(walDir))) wal = await Wal.create(walDir)
//   else {wal, recovered} = await Wal.open(walDir, {
//     startAt: async (markers) => {   // newest snapshot file that loads and the WAL knows
//       const {loaded} = await snapshotter.loadNewest((m) =>
//         markers.some((k) => k.index === m.index && k.term === m.term));
//       return loaded?.snapshot.metadata ?? {index: 0, term: 0};
//     }})
//   then restore the state machine from that snapshot and hand recovered.hardState and
//   recovered.entries to the Raft storage.
//
// Each Ready, before sending ready.messages
//   if ready.snapshot (installed from the leader): await snapshotter.save(snapshot), then
//   wal.saveSnapshotMarker(snapshot.metadata), as etcd does: a marker must never point at
//   a snapshot file that does not exist, and the entries after it must follow it;
//   then, if ready.mustSync, await wal.save(ready.hardState, ready.entries). Saves
//   are written in call order, so the marker and the save can be issued back to back and
//   only the last awaited.
//
// Local compaction at applied index i
//   snapshotter.save(...) -> wal.saveSnapshotMarker(meta) -> wal.releaseTo(<index of the
//   oldest snapshot file kept>) -> snapshotter.purge(keep). releaseTo never passes the
//   newest marker, so entries after the newest snapshot always stay in the WAL; released
//   segments are deleted only while more than `maxSegments` files exist (--max-wals).

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
