// The write-ahead log: segment files on disk, group commit, recovery.
//
// Every save() is encoded (framed and checksummed) at call time, in call order, and
// queued. One flush at a time takes everything queued (up to maxWriteBytes), writes it
// with a single positioned writev that is also its fdatasync (the active segment is opened
// O_DSYNC when the WAL syncs), then resolves every caller in the group. Saves that arrive during a
// flush form the next group. Writes never overlap one another: segment-scan.ts relies on "one unsynced write at a time" to tell a
// torn tail from corruption. While no save waits, the same loop writes zeros ahead of the records
// (WalOptions.preallocateBytes), one 64 KiB write at a time.

import { randomInt } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { type FileHandle, mkdir, open, readdir, readFile, rename, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Entry, HardState, SnapshotMetadata } from "@etcd-ts/raft";
import { eventTrace } from "@etcd-ts/telemetry";
import { fsyncDir, writeFully, writeFullySync } from "./durable-fs.js";
import { LogReplay, type SnapshotRef } from "./log-replay.js";
import { type Frame, RecordType } from "./record-frame.js";
import {
  decodeSnapshotMarkerPayload,
  encodeSaveRecords,
  encodeSegmentStart,
  encodeSyncPoint,
} from "./record-payloads.js";
import { formatSegmentName, parseSegmentName } from "./segment-name.js";
import { scanSegment, type TornTail } from "./segment-scan.js";
import { WalCorruptionError, WalFailedError, WalNotFoundError } from "./wal-errors.js";

/** The subset of pino's interface the WAL uses; a pino logger fits as is. */
export interface WalLogger {
  info(details: Record<string, unknown>, message: string): void;
  warn(details: Record<string, unknown>, message: string): void;
  error(details: Record<string, unknown>, message: string): void;
}

const silentLogger: WalLogger = { info() {}, warn() {}, error() {} };

export interface WalOptions {
  /** Roll to a new segment once the current one reaches this size. Default 64 MiB. */
  segmentBytes?: number;
  /** Upper bound on one group write; a single larger save still goes alone. Default 16 MiB. */
  maxWriteBytes?: number;
  /**
   * false skips every fsync: saves resolve once written to the page cache, which a power
   * loss can undo. Only for tests and benchmarks.
   */
  sync?: boolean;
  logger?: WalLogger;
  /**
   * Segment files kept (etcd's --max-wals): once there are more, the oldest released ones
   * (wholly before releaseTo's index and the newest durable snapshot marker) are deleted.
   * 0 keeps every file, as etcd's 0 does. Default 1: every released segment goes at once.
   */
  maxSegments?: number;
  /** Called with each fdatasync's duration in seconds (etcd_disk_wal_fsync_duration_seconds). */
  onFsync?: (seconds: number) => void;
  /**
   * An inline save (save()'s `inline`) blocks the caller's thread for its write, so it is
   * allowed only while the last write's sync took less than this: a slow or throttled disk
   * (tens of ms per sync) sends writes back to the thread pool, and the member keeps serving
   * reads, heartbeats and its peers meanwhile. Default 0.002 (2 ms).
   */
  inlineMaxSyncSeconds?: number;
  /**
   * With sync on, the WAL keeps up to this many bytes of synced zeros after the active segment's
   * records, written while no save waits (64 KiB per write, between group writes, never beside
   * one), so a record's O_DSYNC write usually lands in blocks the file already has: it changes
   * neither the file's size nor its block map, and on this ext4 (no journal) a write that
   * allocates a block took ~1.5x as long (bench/JOURNAL.md, 2026-12-07). A save that finds no
   * room appends as without it; one that arrives during a zero write waits for that one write
   * alone (1 MiB written on the write path cost put 100 / 10 its p99). The zeros after the last
   * record look like a torn write of which nothing reached the disk (segment-scan.ts): start-up
   * keeps them as room, and a roll cuts them off the segment it leaves before the next one
   * exists, so only the last segment ever ends in zeros. 0: off. Default 256 KiB.
   */
  preallocateBytes?: number;
}

export interface WalCreateOptions extends WalOptions {
  /** Start the log after this snapshot (a restored backup, say) instead of at index 1. */
  snapshot?: SnapshotMetadata;
}

export interface WalOpenOptions extends WalOptions {
  /**
   * The snapshot to replay entries after; default the newest snapshot marker in the log.
   * `{index: 0, term: 0}` replays from the start. As a function, it is given the markers
   * found, so the caller can pick the newest one whose snapshot file loads, e.g.
   * `(markers) => snapshotter.loadNewest((m) => markers.some(...))`, without reading twice.
   */
  startAt?: SnapshotRef | ((markers: readonly SnapshotMetadata[]) => Promise<SnapshotRef> | SnapshotRef);
}

export interface WalRecovery {
  /** The snapshot marker the entries follow; undefined when they start at the log's start. */
  snapshot?: SnapshotMetadata;
  hardState?: HardState;
  entries: Entry[];
  /** Every snapshot marker still in the log, oldest first. */
  markers: SnapshotMetadata[];
  /** Set when the last segment ended in a torn write, which was cut off. */
  tornTail?: TornTail;
  /** Leftover temp files of segments whose creation a crash interrupted; deleted. */
  removedTempFiles: string[];
}

export interface WalStats {
  /** Group writes (one writev each). */
  writes: number;
  bytesWritten: number;
  /** Saves (including snapshot markers) made durable. */
  saves: number;
  fsyncs: number;
  fsyncSecondsTotal: number;
  dirFsyncs: number;
  segmentsCreated: number;
  segmentsRemoved: number;
}

interface Segment {
  seq: number;
  firstIndex: number;
  path: string;
  /** Highest entry index written to it; 0 if none. Decides what releaseTo may drop. */
  maxEntryIndex: number;
}

interface ActiveSegment extends Segment {
  handle: FileHandle;
  /** Where the next record goes: the end of the last one. */
  size: number;
  /** The file's length: zeros from `size` to here (WalOptions.preallocateBytes). */
  allocated: number;
}

interface PendingSave {
  records: Buffer;
  hardState?: HardState;
  marker?: SnapshotMetadata;
  lastIndexAfter: number;
  maxEntryIndex: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** One group's bytes and where they go in the active segment. */
interface GroupWrite {
  buffers: Buffer[];
  total: number;
  position: number;
  /** When the write started (process.hrtime.bigint()), for the fsync histogram. */
  started: bigint;
}

const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
const DEFAULT_MAX_WRITE_BYTES = 16 * 1024 * 1024;
const DEFAULT_PREALLOCATE_BYTES = 256 * 1024;
/** One zero write (WalOptions.preallocateBytes): the longest a save can wait behind one. */
const PREALLOCATE_STEP_BYTES = 64 * 1024;
const TEMP_SUFFIX = ".tmp";

export class Wal {
  private readonly segmentBytes: number;
  private readonly maxWriteBytes: number;
  private readonly sync: boolean;
  private readonly logger: WalLogger;
  private readonly onFsync?: (seconds: number) => void;

  private pending: PendingSave[] = [];
  private flushScheduled = false;
  private flushing = false;
  private idleWaiters: (() => void)[] = [];
  private failure?: Error;
  private releasing: Promise<unknown> = Promise.resolve();
  private readonly maxSegments: number;
  private readonly inlineMaxSyncSeconds: number;
  private readonly preallocateBytes: number;
  /** One zero write's bytes (preallocateBytes), made once. */
  private zeros: Buffer | undefined;
  /** The highest index releaseTo was given: segments wholly at or below it may go. */
  private releasedTo = 0;
  /** Whether everything written to the active segment has been fdatasync'ed. */
  private tailSynced = true;
  /** How long the last write's sync took (see inlineMaxSyncSeconds); 0 until one was made. */
  private lastSyncSeconds = 0;
  private closed = false;
  /** Last index as of everything queued: what the next save's entries must follow. */
  private queuedLastIndex: number;
  /**
   * The same, and the newest hard state and marker, as of everything written. A roll syncs
   * before copying them forward; markers are always synced before releaseTo trusts them.
   */
  private writtenLastIndex: number;
  private writtenHardState?: HardState;
  private writtenMarker?: SnapshotMetadata;

  private readonly counters: WalStats = {
    writes: 0,
    bytesWritten: 0,
    saves: 0,
    fsyncs: 0,
    fsyncSecondsTotal: 0,
    dirFsyncs: 0,
    segmentsCreated: 0,
    segmentsRemoved: 0,
  };

  private constructor(
    readonly dir: string,
    private readonly salt: number,
    private readonly segments: Segment[],
    private active: ActiveSegment,
    state: { lastIndex: number; hardState?: HardState; marker?: SnapshotMetadata },
    options: WalOptions,
  ) {
    this.segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    this.maxWriteBytes = options.maxWriteBytes ?? DEFAULT_MAX_WRITE_BYTES;
    this.sync = options.sync ?? true;
    this.logger = options.logger ?? silentLogger;
    this.onFsync = options.onFsync;
    this.maxSegments = options.maxSegments ?? 1;
    this.inlineMaxSyncSeconds = options.inlineMaxSyncSeconds ?? 0.002;
    this.preallocateBytes = options.preallocateBytes ?? DEFAULT_PREALLOCATE_BYTES;
    if (!Number.isSafeInteger(this.preallocateBytes) || this.preallocateBytes < 0) {
      throw new RangeError(`preallocateBytes must be a non-negative integer, got ${this.preallocateBytes}`);
    }
    // Without sync a record write allocates nothing on the write path anyway (no fdatasync).
    if (!this.sync) this.preallocateBytes = 0;
    if (!Number.isSafeInteger(this.maxSegments) || this.maxSegments < 0) {
      throw new RangeError(`maxSegments must be a non-negative integer, got ${this.maxSegments}`);
    }
    if (!Number.isSafeInteger(this.segmentBytes) || this.segmentBytes <= 0) {
      throw new RangeError(`segmentBytes must be a positive integer, got ${this.segmentBytes}`);
    }
    this.queuedLastIndex = state.lastIndex;
    this.writtenLastIndex = state.lastIndex;
    this.writtenHardState = state.hardState;
    this.writtenMarker = state.marker;
  }

  /** True if `dir` holds at least one WAL segment. */
  static async exists(dir: string): Promise<boolean> {
    const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return [] as string[];
      throw err;
    });
    return names.some((n) => parseSegmentName(n) !== undefined);
  }

  static async create(dir: string, options: WalCreateOptions = {}): Promise<Wal> {
    if (await Wal.exists(dir)) throw new Error(`a WAL already exists in ${dir}`);
    await mkdir(dir, { recursive: true });
    const sync = options.sync ?? true;
    const salt = randomInt(0, 2 ** 32);
    const snapshot = options.snapshot;
    const firstIndex = (snapshot?.index ?? 0) + 1;
    const active = await createSegmentFile(dir, 0, firstIndex, salt, snapshot, undefined, sync);
    if (sync) await fsyncDir(dirname(dir));
    const wal = new Wal(
      dir,
      salt,
      [active],
      active,
      { lastIndex: firstIndex - 1, marker: snapshot },
      options,
    );
    wal.counters.segmentsCreated = 1;
    if (sync) wal.counters.dirFsyncs = 2;
    wal.preallocateWhenIdle();
    return wal;
  }

  static async open(
    dir: string,
    options: WalOpenOptions = {},
  ): Promise<{ wal: Wal; recovered: WalRecovery }> {
    const logger = options.logger ?? silentLogger;
    const sync = options.sync ?? true;
    const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") throw new WalNotFoundError(dir);
      throw err;
    });

    // A segment is created as a temp file and renamed only once complete; a leftover
    // temp file is a creation the crash interrupted and holds nothing acknowledged.
    const removedTempFiles: string[] = [];
    for (const name of names) {
      if (name.endsWith(`.wal${TEMP_SUFFIX}`)) {
        await unlink(join(dir, name));
        removedTempFiles.push(name);
        logger.warn({ file: join(dir, name) }, "wal: removed an unfinished segment file");
      }
    }

    const found = names
      .map((name) => ({ name, parsed: parseSegmentName(name) }))
      .filter((s) => s.parsed !== undefined)
      .map((s) => ({ name: s.name, seq: s.parsed!.seq, firstIndex: s.parsed!.firstIndex }))
      .sort((a, b) => a.seq - b.seq);
    if (found.length === 0) throw new WalNotFoundError(dir);
    for (let k = 1; k < found.length; k++) {
      if (found[k].seq !== found[k - 1].seq + 1) {
        throw new WalCorruptionError(
          join(dir, found[k].name),
          0,
          `segment ${found[k - 1].seq + 1} is missing: the one before this is ${found[k - 1].name}`,
        );
      }
    }

    // etcd's selectWALFiles: replaying from the newest snapshot marker needs only the segments
    // from the one holding the entry after it. Every segment starts with the newest marker and
    // hard state of its time, so the newest marker of all is in the last segment, and a segment
    // whose successor starts at or below that marker's index + 1 holds only entries the
    // snapshot covers (a segment's entries are all below its successor's first index). Reading
    // every kept segment (--max-wals of 64 MiB) cost ~15 s at restart with 1M keys written.
    // A caller choosing among markers (startAt) gets them all, from every segment.
    let first = 0;
    let lastScanned: ReturnType<typeof scanSegment> | undefined;
    if (options.startAt === undefined && found.length > 1) {
      const lastPath = join(dir, found[found.length - 1].name);
      lastScanned = scanSegment(await readFile(lastPath), lastPath, true);
      const newest = newestMarkerIndex(lastScanned.records);
      if (newest !== undefined) {
        while (first < found.length - 1 && found[first + 1].firstIndex <= newest + 1) first++;
      }
    }
    const replay = new LogReplay();
    let salt = 0;
    let tornTail: TornTail | undefined;
    let lastEnd = 0;
    for (let k = first; k < found.length; k++) {
      const path = join(dir, found[k].name);
      const isLast = k === found.length - 1;
      const scanned =
        isLast && lastScanned !== undefined ? lastScanned : scanSegment(await readFile(path), path, isLast);
      const { header } = scanned;
      if (header.seq !== found[k].seq || header.firstIndex !== found[k].firstIndex) {
        throw new WalCorruptionError(
          path,
          0,
          `header says sequence ${header.seq}, first index ${header.firstIndex}, which does not match the file name`,
        );
      }
      if (k === first) salt = header.salt;
      else if (header.salt !== salt)
        throw new WalCorruptionError(path, 0, "segment belongs to a different WAL");
      replay.beginSegment(path, header);
      for (const frame of scanned.records) replay.apply(frame);
      if (isLast) {
        tornTail = scanned.torn;
        lastEnd = scanned.end;
      }
    }
    const startAt =
      typeof options.startAt === "function" ? await options.startAt(replay.snapshotMarkers) : options.startAt;
    const log = replay.finish(startAt);

    const last = found[found.length - 1];
    const lastPath = join(dir, last.name);
    const handle = await open(lastPath, activeSegmentFlags(fsConstants.O_RDWR, sync));
    // Nothing but zeros after the last record: the preallocated room (WalOptions.preallocateBytes),
    // or a torn write of which no byte reached the disk. The two look alike and neither holds
    // anything: the zeros stay as the room the next records go to.
    let allocated = lastEnd;
    if (tornTail?.zeroFilled && tornTail.intactRecordsDropped === 0) {
      allocated = lastEnd + tornTail.droppedBytes;
      tornTail = undefined;
    }
    try {
      if (tornTail) await handle.truncate(tornTail.offset);
      // What was just read may still be only in the page cache (the previous process was
      // killed before its fsync, or a segment's rename was not yet synced): make it durable
      // before anyone acts on it, and before the next SyncPoint vouches for it.
      if (sync) {
        await handle.sync();
        await fsyncDir(dir);
      }
      if (tornTail) {
        logger.warn(
          {
            file: tornTail.file,
            offset: tornTail.offset,
            droppedBytes: tornTail.droppedBytes,
            intactRecordsDropped: tornTail.intactRecordsDropped,
            zeroFilled: tornTail.zeroFilled,
            reason: tornTail.reason,
          },
          "wal: truncated a torn write at the end of the log",
        );
      }
    } catch (err) {
      await handle.close();
      throw err;
    }

    const segments: Segment[] = found.map((f, k) => ({
      seq: f.seq,
      firstIndex: f.firstIndex,
      path: join(dir, f.name),
      // A segment not read holds entries below its successor's first index: a bound that
      // releases it no earlier than its real highest index would.
      maxEntryIndex: k < first ? found[k + 1].firstIndex - 1 : log.segmentMaxIndex[k - first],
    }));
    const active: ActiveSegment = { ...segments[segments.length - 1], handle, size: lastEnd, allocated };
    segments[segments.length - 1] = active;
    const wal = new Wal(
      dir,
      salt,
      segments,
      active,
      { lastIndex: log.lastIndex, hardState: log.hardState, marker: log.markers.at(-1) },
      options,
    );
    if (sync) wal.counters.dirFsyncs = 1;
    wal.preallocateWhenIdle();
    logger.info(
      {
        dir,
        segments: segments.length,
        segmentsRead: segments.length - first,
        snapshotIndex: log.snapshot?.index ?? 0,
        entries: log.entries.length,
        lastIndex: log.lastIndex,
      },
      "wal: opened",
    );
    return {
      wal,
      recovered: {
        snapshot: log.snapshot,
        hardState: log.hardState,
        entries: log.entries,
        markers: log.markers,
        tornTail,
        removedTempFiles,
      },
    };
  }

  /**
   * Appends entries (which must continue the log, possibly overwriting a suffix) and the
   * hard state, after every earlier save. Resolves once durable (a Ready whose only change
   * is the commit index need not be saved at all: Raft's mustSync); rejects if that cannot be.
   * `inline`: when no write is queued or in flight, no new segment is due and the last sync
   * was fast (inlineMaxSyncSeconds), the save is
   * written and synced on the calling thread before save() returns, blocking it for one
   * O_DSYNC write instead of a trip through libuv's thread pool, whose two thread wake-ups cost
   * ~70-160 µs per write on this 2-core machine (paired blocks of 352-byte O_DSYNC appends: p50
   * 241 vs 173 µs alone, 525 vs 365 µs with three processes writing). Writes still never
   * overlap (the condition above), which segment-scan.ts relies on.
   */
  save(hardState: HardState | undefined, entries: readonly Entry[], inline = false): Promise<void> {
    return this.enqueue(hardState, entries, undefined, inline);
  }

  /**
   * Records that a snapshot at meta.index exists (save the snapshot file first), so the log
   * can be replayed from it and releaseTo may drop what precedes it.
   */
  saveSnapshotMarker(meta: SnapshotMetadata): Promise<void> {
    return this.enqueue(undefined, [], meta);
  }

  /**
   * Releases the segments whose entries are all <= index (never past the newest durable
   * snapshot marker, never the segment being written), then deletes the oldest released
   * ones while more than maxSegments files remain (etcd's WAL.ReleaseLockTo + PurgeFile).
   * Returns how many went.
   */
  releaseTo(index: number): Promise<number> {
    this.releasedTo = Math.max(this.releasedTo, index);
    return this.purge(index);
  }

  private purge(index: number): Promise<number> {
    // One purge at a time: two running side by side would each delete their own
    // oldest-first run, together not oldest first, and a crash between them leaves a gap.
    const run = this.releasing.then(() => this.purgeReleased(index));
    this.releasing = run.catch(() => undefined);
    return run;
  }

  private async purgeReleased(index: number): Promise<number> {
    if (this.maxSegments === 0) return 0;
    const limit = Math.min(index, this.writtenMarker?.index ?? 0);
    const doomed: Segment[] = [];
    while (
      this.segments.length > this.maxSegments &&
      this.segments[0] !== this.active &&
      this.segments[0].maxEntryIndex <= limit
    ) {
      doomed.push(this.segments.shift()!);
    }
    // Oldest first, each deletion synced before the next: should a crash interrupt this,
    // what remains is still a gap-free run of segments.
    for (const seg of doomed) {
      await unlink(seg.path);
      if (this.sync) {
        await fsyncDir(this.dir);
        this.counters.dirFsyncs++;
      }
      this.counters.segmentsRemoved++;
      this.logger.info({ file: seg.path, releasedTo: limit }, "wal: released segment");
    }
    return doomed.length;
  }

  /** Waits for queued saves, then closes the file. Later saves reject. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.drain();
    await this.active.handle.close();
  }

  stats(): WalStats {
    return { ...this.counters };
  }

  /** Segment file paths, oldest first. */
  segmentPaths(): string[] {
    return this.segments.map((s) => s.path);
  }

  private enqueue(
    hardState: HardState | undefined,
    entries: readonly Entry[],
    marker: SnapshotMetadata | undefined,
    inline = false,
  ): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error("WAL is closed"));
    let lastIndexAfter = this.queuedLastIndex;
    let maxEntryIndex = 0;
    if (entries.length > 0) {
      const first = entries[0].index;
      // A gap would leave a log that replay must reject as corrupt, so refuse it here.
      if (first < 1 || first > lastIndexAfter + 1) {
        return Promise.reject(
          new RangeError(`WAL: entry ${first} does not continue the log (last index ${lastIndexAfter})`),
        );
      }
      for (let k = 1; k < entries.length; k++) {
        if (entries[k].index !== first + k) {
          return Promise.reject(
            new RangeError(
              `WAL: entries in one save must be consecutive, got ${entries[k].index} after ${entries[k - 1].index}`,
            ),
          );
        }
      }
      lastIndexAfter = maxEntryIndex = entries[entries.length - 1].index;
    }
    if (marker) lastIndexAfter = Math.max(lastIndexAfter, marker.index);
    let records: Buffer;
    try {
      records = encodeSaveRecords(hardState, entries, marker, this.salt);
    } catch (err) {
      return Promise.reject(err);
    }
    this.queuedLastIndex = lastIndexAfter;
    if (
      inline &&
      !this.flushScheduled &&
      !this.flushing &&
      this.pending.length === 0 &&
      this.active.size < this.segmentBytes &&
      this.lastSyncSeconds < this.inlineMaxSyncSeconds
    ) {
      eventTrace?.add("wal.inline");
      const item: PendingSave = {
        records,
        hardState,
        marker,
        lastIndexAfter,
        maxEntryIndex,
        resolve() {},
        reject() {},
      };
      try {
        const write = this.groupWrite([item]);
        if (write !== undefined) writeFullySync(this.active.handle.fd, write.buffers, write.position);
        this.groupWritten([item], write);
      } catch (err) {
        this.fail(err, []);
        return Promise.reject(this.failure);
      }
      this.counters.saves++;
      this.preallocateWhenIdle();
      return Promise.resolve();
    }
    eventTrace?.add("wal.queued");
    return new Promise<void>((resolve, reject) => {
      this.pending.push({
        records,
        hardState,
        marker,
        lastIndexAfter,
        maxEntryIndex,
        resolve,
        reject,
      });
      this.scheduleFlush();
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.flushing) return;
    this.flushScheduled = true;
    // Deferred to the end of the current task, so that every save issued in it joins the same
    // write and fsync, but not to a later turn of the event loop: this write is on the path of
    // every proposal, and a turn (a poll phase) was paid before it started. Saves made while a
    // write is in flight join the next one (flushQueued's loop), so concurrent callers still
    // share writes.
    queueMicrotask(() => {
      this.flushScheduled = false;
      void this.flushQueued();
    });
  }

  private async flushQueued(): Promise<void> {
    this.flushing = true;
    try {
      // Saves made by callers woken below, or during a write, are picked up by this loop.
      while (!this.failure) {
        if (this.pending.length === 0) {
          // No save waits: room for the next records, one zero write at a time, so a save
          // that arrives meanwhile waits for one of them at most.
          if (!this.preallocationDue()) break;
          try {
            await this.preallocateStep();
          } catch (err) {
            // The records' file, like a record write's failure (fail() says why).
            this.fail(err, []);
            return;
          }
          continue;
        }
        const group = this.takeGroup();
        try {
          await this.writeGroup(group);
        } catch (err) {
          this.fail(err, group);
          return;
        }
        this.counters.saves += group.length;
        for (const item of group) item.resolve();
      }
    } finally {
      this.flushing = false;
      for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  private takeGroup(): PendingSave[] {
    let bytes = this.pending[0].records.length;
    let count = 1;
    while (count < this.pending.length && bytes + this.pending[count].records.length <= this.maxWriteBytes) {
      bytes += this.pending[count].records.length;
      count++;
    }
    return this.pending.splice(0, count);
  }

  private async writeGroup(group: PendingSave[]): Promise<void> {
    if (this.active.size >= this.segmentBytes) await this.roll();
    const write = this.groupWrite(group);
    if (write !== undefined) await writeFully(this.active.handle, write.buffers, write.position);
    this.groupWritten(group, write);
  }

  /** The bytes of a group's write to the active segment; undefined when it has none. */
  private groupWrite(group: readonly PendingSave[]): GroupWrite | undefined {
    const buffers: Buffer[] = [];
    let total = 0;
    for (const item of group) {
      if (item.records.length === 0) continue;
      buffers.push(item.records);
      total += item.records.length;
    }
    if (total === 0) return undefined;
    // A SyncPoint vouches that every byte before it is durable: true only right after
    // an fsync (see segment-scan.ts), so it leads only writes that follow one.
    if (this.sync && this.tailSynced) {
      const syncPoint = encodeSyncPoint(this.active.size, this.salt);
      buffers.unshift(syncPoint);
      total += syncPoint.length;
    }
    eventTrace?.add(`wal.write ${this.active.size} ${total}`);
    return { buffers, total, position: this.active.size, started: process.hrtime.bigint() };
  }

  /** Records a group's write as done (`write` has reached the file). */
  private groupWritten(group: readonly PendingSave[], write: GroupWrite | undefined): void {
    const active = this.active;
    if (write !== undefined) {
      active.size += write.total;
      // A write past the zeros (none were left) made the file longer itself.
      if (active.size > active.allocated) active.allocated = active.size;
      this.counters.writes++;
      this.counters.bytesWritten += write.total;
      // O_DSYNC (see activeSegmentFlags): the write was its own fdatasync.
      if (this.sync) this.recordSync(write.started);
      else this.tailSynced = false;
    }
    for (const item of group) {
      this.writtenLastIndex = item.lastIndexAfter;
      if (item.hardState) this.writtenHardState = item.hardState;
      if (item.marker) this.writtenMarker = item.marker;
      if (item.maxEntryIndex > active.maxEntryIndex) active.maxEntryIndex = item.maxEntryIndex;
    }
  }

  private recordSync(started: bigint): void {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.tailSynced = true;
    this.lastSyncSeconds = seconds;
    this.counters.fsyncs++;
    this.counters.fsyncSecondsTotal += seconds;
    this.onFsync?.(seconds);
  }

  /** Whether the active segment wants more zeros after its records (WalOptions.preallocateBytes). */
  private preallocationDue(): boolean {
    const active = this.active;
    return (
      this.preallocateBytes > 0 &&
      !this.closed &&
      active.allocated - active.size < this.preallocateBytes &&
      // Room past the size that rolls the segment would never be used.
      active.allocated < this.segmentBytes
    );
  }

  /** Starts the flush loop to write zeros when the segment wants some and nothing is in flight. */
  private preallocateWhenIdle(): void {
    if (!this.failure && this.preallocationDue()) this.scheduleFlush();
  }

  /**
   * One zero write after the active segment's allocated end, in the flush loop like a group's
   * write (writes never overlap: segment-scan.ts), durable when it returns (O_DSYNC). It
   * changes no record: the zeros go past the last one, and a roll cuts them off.
   */
  private async preallocateStep(): Promise<void> {
    const active = this.active;
    this.zeros ??= Buffer.alloc(Math.min(PREALLOCATE_STEP_BYTES, this.preallocateBytes));
    const piece = Math.min(this.zeros.length, this.segmentBytes - active.allocated);
    eventTrace?.add(`wal.zeros ${active.allocated} ${piece}`);
    await writeFully(active.handle, [this.zeros.subarray(0, piece)], active.allocated);
    active.allocated += piece;
  }

  private async roll(): Promise<void> {
    // Only the last segment may end in a torn write; with sync on, every write to the old
    // one was already durable when it returned (O_DSYNC).
    const previous = this.active;
    // Nor in zeros: the preallocated rest goes, durably, before a later segment exists
    // (segment-scan.ts: damage in any segment but the last is corruption).
    if (previous.allocated > previous.size) {
      await previous.handle.truncate(previous.size);
      if (this.sync) await previous.handle.datasync();
      previous.allocated = previous.size;
    }
    const next = await createSegmentFile(
      this.dir,
      previous.seq + 1,
      this.writtenLastIndex + 1,
      this.salt,
      this.writtenMarker,
      this.writtenHardState,
      this.sync,
    );
    this.segments.push(next);
    this.active = next;
    this.counters.segmentsCreated++;
    if (this.sync) this.counters.dirFsyncs++;
    this.tailSynced = true;
    await previous.handle.close();
    this.logger.info({ file: next.path, firstIndex: next.firstIndex }, "wal: started a new segment");
    // One more file may put a released one over maxSegments (etcd's purge loop would find
    // it within 30 s); not awaited, so the write that rolled does not wait on deletions.
    if (this.maxSegments > 0 && this.releasedTo > 0) {
      this.purge(this.releasedTo).catch((err: unknown) =>
        this.logger.warn({ err: String(err) }, "wal: purging released segments failed"),
      );
    }
  }

  private fail(err: unknown, group: PendingSave[]): void {
    const cause = err instanceof Error ? err : new Error(String(err));
    // After a failed fsync the kernel may have dropped the dirty pages, so retrying could
    // report durability that does not exist: the WAL stays failed until reopened.
    this.failure = new WalFailedError(`WAL write failed, no further writes accepted: ${cause.message}`, {
      cause,
    });
    this.logger.error({ err: cause.message, dir: this.dir }, "wal: write failed");
    for (const item of group) item.reject(this.failure);
    for (const item of this.pending.splice(0)) item.reject(this.failure);
  }

  private async drain(): Promise<void> {
    while (this.flushScheduled || this.flushing || (this.pending.length > 0 && !this.failure)) {
      if (!this.flushScheduled && !this.flushing) this.scheduleFlush();
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    }
  }
}

/**
 * The segment being written is opened O_DSYNC when the WAL syncs: each write returns once
 * its data is durable, the same work as write + fdatasync in one system call, so a save
 * costs one trip through libuv's thread pool instead of two (on a busy event loop each
 * trip also waits its turn to be picked up: ~0.3 ms per save measured under put load).
 */
function activeSegmentFlags(base: number, sync: boolean): number {
  return sync ? base | fsConstants.O_DSYNC : base;
}

/** The index of the last snapshot marker among a segment's records, if it has one. */
function newestMarkerIndex(records: readonly Frame[]): number | undefined {
  for (let i = records.length - 1; i >= 0; i--) {
    if (records[i].type === RecordType.SnapshotMarker)
      return decodeSnapshotMarkerPayload(records[i].payload).index;
  }
  return undefined;
}

/**
 * Creates a segment complete or not at all: header and the carried-over snapshot marker
 * and hard state (so the log stays replayable once older segments are released) go to a
 * temp file, which is synced and renamed into place before the directory is synced.
 */
async function createSegmentFile(
  dir: string,
  seq: number,
  firstIndex: number,
  salt: number,
  marker: SnapshotMetadata | undefined,
  hardState: HardState | undefined,
  sync: boolean,
): Promise<ActiveSegment> {
  const path = join(dir, formatSegmentName(seq, firstIndex));
  const tmp = `${path}${TEMP_SUFFIX}`;
  const start = encodeSegmentStart(salt, seq, firstIndex, encodeSaveRecords(hardState, [], marker, salt));
  const handle = await open(
    tmp,
    activeSegmentFlags(fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, sync),
  );
  try {
    await writeFully(handle, [start], 0);
    if (sync) await handle.sync();
    await rename(tmp, path);
    if (sync) await fsyncDir(dir);
    return { seq, firstIndex, path, maxEntryIndex: 0, handle, size: start.length, allocated: start.length };
  } catch (err) {
    await handle.close();
    throw err;
  }
}
