// When a member snapshots and how much log it keeps (etcd's triggerSnapshot and
// SnapshotCatchUpEntries): a snapshot every `snapshotCount` applied entries, then the in-memory
// log is compacted to keep a tail of entries so that a follower a little behind catches up from
// the log rather than needing a whole snapshot.

/** etcd's SnapshotCatchUpEntries. */
export const SNAPSHOT_CATCH_UP_ENTRIES = 5000;

export function shouldSnapshot(appliedIndex: number, snapshotIndex: number, snapshotCount: number): boolean {
  return snapshotCount > 0 && appliedIndex - snapshotIndex > snapshotCount;
}

/**
 * The index to compact the log to after a snapshot at `snapshotIndex`, or undefined when
 * nothing would go (the log's first index is already past the point).
 */
export function compactionIndex(
  snapshotIndex: number,
  firstIndex: number,
  keep = SNAPSHOT_CATCH_UP_ENTRIES,
): number | undefined {
  const to = snapshotIndex - keep;
  return to >= firstIndex ? to : undefined;
}
