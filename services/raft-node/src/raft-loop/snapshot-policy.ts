// When a member snapshots and how much log it keeps (etcd's triggerSnapshot and
// SnapshotCatchUpEntries): a snapshot every `snapshotCount` applied entries, then the in-memory
// log is compacted to keep a tail of entries so that a follower a little behind catches up from
// the log rather than needing a whole snapshot.

/** etcd's SnapshotCatchUpEntries. */
export const SNAPSHOT_CATCH_UP_ENTRIES = 5000;

/**
 * Whether to snapshot now. The applied index never runs ahead of the Raft log: a snapshot a
 * leader sends is stamped with its image's own applied index (see Member.writeSnapshotImage),
 * and Raft's storage refuses a snapshot past the log's end.
 */
export function shouldSnapshot(appliedIndex: number, snapshotIndex: number, snapshotCount: number): boolean {
  return snapshotCount > 0 && appliedIndex - snapshotIndex > snapshotCount;
}

/**
 * Applied entries before a snapshot at which its state machine sync is got ready (a thread
 * started and attached ahead: MvccStore.prepareSync), or a hundredth of the count if more.
 * Started inside the sync, that thread cost 79-112 ms the Ready loop waited; it takes ~100 ms
 * to start. Below ~6,700 entries/s, 1,000 entries are 150 ms or more; faster, snapshots at the
 * default count come less than 60 s apart, so the previous sync's thread is still running
 * (stopped only after 60 s idle) and only the first snapshot relies on the lead.
 */
export const SYNC_PREPARE_ENTRIES = 1000;

/** Whether the next snapshot is near enough to get its state machine sync ready. */
export function snapshotNear(appliedIndex: number, snapshotIndex: number, snapshotCount: number): boolean {
  if (snapshotCount <= 0) return false;
  const lead = Math.max(SYNC_PREPARE_ENTRIES, Math.floor(snapshotCount / 100));
  return appliedIndex - snapshotIndex > snapshotCount - lead;
}

/**
 * The index to compact the log to after a snapshot at `snapshotIndex`, or undefined when
 * nothing would go (the log's first index is already past the point). `keepAfter`: a follower
 * still needs the entries after this index (see SnapshotFollowUps), so none of them goes.
 */
export function compactionIndex(
  snapshotIndex: number,
  firstIndex: number,
  keep = SNAPSHOT_CATCH_UP_ENTRIES,
  keepAfter?: number,
): number | undefined {
  const to = Math.min(snapshotIndex - keep, keepAfter ?? Number.POSITIVE_INFINITY);
  return to >= firstIndex ? to : undefined;
}

/** How long a follower sent a snapshot may hold the leader's log back while it installs it. */
export const SNAPSHOT_FOLLOW_UP_MS = 30_000;

/** What the leader knows of one follower (Raft's progress, as RawNode.status() gives it). */
export interface FollowerProgress {
  match: number;
  state: "probe" | "replicate" | "snapshot";
  pendingSnapshot: number;
}

/**
 * Followers that were sent a snapshot need the entries right after it once they have installed
 * it. If the leader compacts those away meanwhile (installing takes a while, the log moves on),
 * the follower is sent another snapshot, and under steady load it never catches up: a member
 * restarted in a soak installed 40 snapshots in a row this way. etcd pauses compaction while a
 * snapshot is being sent (its inflightSnapshots); this also holds the log while the follower
 * installs, until it acknowledges an entry past the snapshot or `holdMs` passes (a follower that
 * slow gets a new snapshot, and the log cannot grow without bound behind a dead one).
 */
export class SnapshotFollowUps {
  private readonly held = new Map<bigint, { index: number; until: number }>();

  constructor(private readonly holdMs = SNAPSHOT_FOLLOW_UP_MS) {}

  /** A snapshot at `index` reached follower `id` whole. */
  sent(id: bigint, index: number, now: number): void {
    if (index > 0) this.held.set(id, { index, until: now + this.holdMs });
  }

  /** The index after which no entry may be compacted away now, or undefined: no hold. */
  keepAfter(followers: ReadonlyMap<bigint, FollowerProgress>, now: number): number | undefined {
    let floor: number | undefined;
    const lower = (index: number) => {
      floor = floor === undefined ? index : Math.min(floor, index);
    };
    for (const pr of followers.values()) {
      if (pr.state === "snapshot" && pr.pendingSnapshot > 0) lower(pr.pendingSnapshot);
    }
    for (const [id, hold] of this.held) {
      const pr = followers.get(id);
      if (pr === undefined || pr.match > hold.index || now >= hold.until) this.held.delete(id);
      else lower(hold.index);
    }
    return floor;
  }
}
