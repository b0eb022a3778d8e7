// The replicated state machine: etcd's MVCC store on RocksDB.
//
// Layout (etcd's): the default column family maps revision keys (see revision.ts) to
// protobuf mvccpb.KeyValue values; a "meta" family holds the applied Raft index and term, the
// scheduled and finished compaction revisions and the alarms. An in-memory B+ tree (tree-index)
// maps each key to its revisions and is rebuilt by scanning RocksDB at open.
//
// Atomicity: applyBatch runs every entry of a batch against the index and stages the writes in
// one RocksDB WriteBatch (together with the new applied index), then writes it, all in one
// synchronous stretch (the binding writes on the calling thread). Readers run between ticks, so
// they see the state before the batch or after it, never part of it; a replayed entry at or below
// the persisted applied index is skipped, so WAL replay after a crash is idempotent.
//
// Durability: by default a batch is written to RocksDB's WAL without fsync: it survives a
// process crash (the bytes are in the OS), and after a machine crash the Raft WAL, which is
// fsynced, replays whatever the state machine lost, as etcd does with its bolt backend. Raft log
// compaction must therefore call syncToDisk() first. `syncWrites: true` fsyncs every batch.
import { rm } from "node:fs/promises";
import { setTimeout as sleep, setImmediate as yieldToEventLoop } from "node:timers/promises";
import { EtcdError, isEtcdError } from "@etcd-ts/api";
import { crc32c } from "@node-rs/crc32";
import { stageTimeline } from "../server/stage-timeline.js";
import { BboltSizeModel } from "./bbolt-size-model.js";
import {
  defragDirOf,
  markCopyInUse,
  readIndexCheckpoint,
  recoverInterruptedDefrag,
  removeIndexCheckpoint,
  replayWrites,
  untilWritesFlow,
  writeIndexCheckpoint,
} from "./database-files.js";
import { copyOffThread } from "./defrag-copy.js";
import {
  type CheckpointState,
  checkpointState,
  decodeCheckpoint,
  encodeCheckpoint,
  sameState,
} from "./index-checkpoint.js";
import type { KeyIndex } from "./key-index.js";
import {
  decodeIndexFields,
  decodeKeyValue,
  encodeKeyValue,
  type IndexFields,
  keyOfEncodedKeyValue,
  keyValueFields,
  readUint64Bytes,
  uint64Bytes,
  withoutValue,
} from "./kv-codec.js";
import { type ChunkRead, HeldPart, RangeReadThreads } from "./range-reader.js";
import {
  indexLimit,
  inIndexOrder,
  passesRevisionFilters,
  StoredChunks,
  shapeRange,
  sortOrderOf,
  sortPositions,
} from "./range-shaping.js";
import type { EncodedRangeResponse } from "./response-codec.js";
import {
  isTombstoneKey,
  mainOfKey,
  REVISION_KEY_LENGTH,
  revisionKey,
  subOfKey,
  writeRevisionKey,
} from "./revision.js";
import {
  type ColumnHandle,
  DEFAULT_TUNING,
  type RecordedWrite,
  RocksBackend,
  type RocksTuning,
  type WriteBatch,
  type WriteRecorder,
} from "./rocks-backend.js";
import { type KeyBounds, type RangeHit, TreeIndex } from "./tree-index.js";
import type {
  AlarmMember,
  AlarmRequest,
  AlarmResponse,
  CompactionRequest,
  CompactionResponse,
  DeleteRangeRequest,
  DeleteRangeResponse,
  Event,
  HashKVResponse,
  KeyValue,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  TxnRequest,
  TxnResponse,
} from "./types.js";
import { AlarmAction, AlarmType, EventType, SortOrder, SortTarget } from "./types.js";
import {
  type ApplyTarget,
  applyPut,
  applyTxn,
  type Change,
  executeDeleteRange,
  header,
  isLatest,
  keyBounds,
  keyValueFromIndex,
  putCost,
  resolveRangeRevision,
  txnCost,
  WriteTxn,
} from "./write-txn.js";

export const DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024;
/** A view's read of many rows stops at about this many bytes (values may be up to 1.5 MiB). */
const VIEW_READ_BYTES = 1024 * 1024;

/** A consistent read-only view of every column family; see MvccStore.openView. */
export interface StoreView {
  /** The column's rows in key order, in chunks; each column can be read once. */
  rows(column: string, chunkRows?: number): AsyncGenerator<{ keys: Buffer[]; values: Buffer[] }>;
  close(): void;
}

export interface MvccStoreOptions {
  /** Backend size past which writes are refused (etcd's --quota-backend-bytes). */
  quotaBytes?: number;
  /** fsync every applied batch (default false: see the durability note above). */
  syncWrites?: boolean;
  /** The lessor's view: puts naming an unknown lease fail with "requested lease not found". */
  leaseExists?: (lease: bigint) => boolean;
  /** Key histories compacted per slice; applies and reads run between slices. */
  compactionSliceKeys?: number;
  /** Ranges reading at most this many values read them on the event-loop thread. */
  syncReadMaxKeys?: number;
  /** Keys of the index a large Range's answer walks per turn of the event loop (default 1024). */
  rangeBatchKeys?: number;
  /**
   * A large Range's values are read and written into its answer on a worker thread (default
   * true; range-reader.ts); false: on libuv's pool, each value then copied on this thread.
   */
  rangeReadThread?: boolean;
  /** Extra column families other state machines (leases, auth) write in the same batches. */
  extraColumns?: readonly string[];
  /** Compress stored revisions (default true). */
  compression?: boolean;
  /** RocksDB block cache for stored revisions (default 64 MiB). */
  blockCacheBytes?: number;
  /** Called with each applied batch's write time in seconds (etcd_disk_backend_commit_duration_seconds). */
  onCommit?: (seconds: number) => void;
}

/**
 * Requests served since the store opened (etcd_mvcc_{put,delete,txn,range}_total): plain
 * fields, so counting costs an increment; metrics read them when scraped.
 */
export interface MvccOpCounts {
  put: number;
  delete: number;
  txn: number;
  range: number;
}

function tuningOf(options: MvccStoreOptions): RocksTuning {
  return {
    compression: options.compression ?? DEFAULT_TUNING.compression,
    blockCacheBytes: options.blockCacheBytes ?? 64 * 1024 * 1024,
  };
}

/** A Raft entry's effect on the store (etcd's InternalRaftRequest members it handles). */
export type MvccRequest =
  | { put: PutRequest }
  | { deleteRange: DeleteRangeRequest }
  | { txn: TxnRequest }
  | { compaction: CompactionRequest }
  | { alarm: AlarmRequest }
  /** Lease revocation: deletes the keys in one write txn (etcd's lessor RangeDeleter). */
  | { deleteKeys: { keys: Buffer[] } }
  /** Another state machine's apply, written atomically with this batch. */
  | { external: (context: ExternalApply) => unknown };

export interface DeleteKeysResponse {
  deleted: number;
  revision: number;
}

export type MvccResponse =
  | PutResponse
  | DeleteRangeResponse
  | TxnResponse
  | CompactionResponse
  | AlarmResponse
  | DeleteKeysResponse
  | unknown;

export interface ApplyEntry {
  index: number;
  term: number;
  /** Absent for entries that only advance the applied index (empty entries, conf changes...). */
  request?: MvccRequest | undefined;
  /**
   * Runs just before the request, in batch order (the auth link's permission check, which must
   * see the auth changes of earlier entries of the same batch); an EtcdError it throws fails
   * the entry, which then changes nothing.
   */
  check?: (() => void) | undefined;
}

export type ApplyResult =
  | { status: "skipped" }
  | { status: "applied"; response: MvccResponse }
  | { status: "failed"; error: EtcdError };

/** Access for an `external` request to the batch being applied. */
export interface ExternalApply {
  put(column: string, key: Buffer, value: Buffer): void;
  del(column: string, key: Buffer): void;
  /** Reads committed state of an extra column (not this batch's own writes). */
  get(column: string, key: Buffer): Buffer | undefined;
  /** Deletes keys in one write txn, as lease revocation does. */
  deleteKeys(keys: Buffer[]): DeleteKeysResponse;
  readonly revision: number;
}

/** A write transaction's effect as watchers see it, delivered once durable. */
export interface AppliedTxn {
  revision: number;
  events: Event[];
  /** Whether the events carry prev_kv (where a previous version exists). */
  prevKvs: boolean;
}

/**
 * Whether a listener wants prev_kv on events. A function is asked at every apply: reading
 * each overwritten value costs a RocksDB read per put, worth paying only while someone
 * (a watcher created with prev_kv) will look at it, as etcd reads them only then.
 */
export type PrevKvWanted = boolean | (() => boolean);

const wanted = (prevKv: PrevKvWanted): boolean => (typeof prevKv === "function" ? prevKv() : prevKv);

export type ApplyListener = (txn: AppliedTxn) => void;

export interface HistoryQuery {
  /** First revision to return (inclusive); must not be below the compacted revision. */
  fromRevision: number;
  /** Last revision to return (inclusive); defaults to the current revision. */
  toRevision?: number;
  key: Buffer;
  rangeEnd?: Buffer;
  /** Only events whose key (latin1, one char per byte) passes; `limit` counts those. */
  matches?: (key: string) => boolean;
  /** Stop after about this many events, at a revision boundary. */
  limit?: number;
  prevKv?: boolean;
  /**
   * Where the events can be (a catch-up round's watched ranges): when these keys hold few of
   * the revisions asked for, their revisions are found in the key index and only those rows
   * are read, instead of a scan over every revision in between (a watch on a quiet prefix
   * resuming far behind the head).
   */
  ranges?: readonly KeyBounds[];
}

/** A revision of some key in a history read from the index. */
interface IndexedRevision {
  main: number;
  sub: number;
  tombstone: boolean;
}

export interface HistoryResult {
  events: Event[];
  /** Where to continue; past `toRevision` when everything was read (a read may end early: at the limit, or for a defragmentation). */
  nextRevision: number;
  /** The store revision the history was read at. */
  revision: number;
}

export const META_COLUMN = "meta";
const META_CONSISTENT_INDEX = Buffer.from("consistent_index");
const META_TERM = Buffer.from("term");
const META_SCHEDULED_COMPACT = Buffer.from("scheduledCompactRev");
const META_FINISHED_COMPACT = Buffer.from("finishedCompactRev");
/** The bbolt size model's Size() (etcd's file size), so that a restart keeps it. Ours alone. */
const META_MODEL_SIZE = Buffer.from("etcdTsModelSize");
const META_ALARM_PREFIX = Buffer.from("alarm/");

/**
 * The "meta" column's keys. The applied index and the compaction marks are etcd's own bucket
 * entries (same names, same encodings); the term and the alarms (etcd keeps those in its
 * "alarm" bucket) are this store's.
 */
export const META_KEYS = {
  consistentIndex: META_CONSISTENT_INDEX,
  term: META_TERM,
  scheduledCompactRev: META_SCHEDULED_COMPACT,
  finishedCompactRev: META_FINISHED_COMPACT,
} as const;

/** The applied index and term found among rows of the "meta" column (an image's, say). */
export function appliedInMetaRows(
  keys: readonly Buffer[],
  values: readonly Buffer[],
): { index?: number; term?: number } {
  const found: { index?: number; term?: number } = {};
  for (let i = 0; i < keys.length; i++) {
    if (keys[i]!.equals(META_CONSISTENT_INDEX)) found.index = readUint64Bytes(values[i]!);
    else if (keys[i]!.equals(META_TERM)) found.term = readUint64Bytes(values[i]!);
  }
  return found;
}
const HASH_KEY_BUCKET = Buffer.from("key");
const HASH_META_BUCKET = Buffer.from("meta");
const EMPTY = Buffer.alloc(0);
const RESTORE_CHUNK = 10_000;
const ASYNC_READ_CHUNK = 1024;
/** KeyValues encoded per turn of the event loop when an answer is built from objects. */
const ENCODE_CHUNK = 1024;
const HISTORY_CHUNK = 1000;
/** etcd's --experimental-compaction-batch-limit default: revisions deleted per bolt commit. */
const ETCD_COMPACTION_BATCH_LIMIT = 1000;
/** A defragmentation's catch-up replays at most this many rounds before holding the store. */
const DEFRAG_CATCH_UP_ROUNDS = 20;
/** ...and holds the store once a round has at most this many writes left to replay. */
const DEFRAG_HELD_REPLAY_WRITES = 2_000;
/** How long a defragmentation waits for open reads before holding the store to wait for them. */
const DEFRAG_UNHELD_READERS_WAIT_MS = 2_000;
/** Recorded batches replayed per event-loop turn while catching up. */
const DEFRAG_REPLAY_SLICE = 64;
const HASH_CHUNK = 4096;

/** A failed Range's chunks, taken and still in flight: those held on a read thread are nobody's now. */
function dropHeld(
  taken: readonly (Buffer | HeldPart)[],
  inFlight: readonly Promise<Buffer | HeldPart>[],
): void {
  const drop = (p: Buffer | HeldPart) => {
    if (p instanceof HeldPart) p.drop();
  };
  for (const p of taken) drop(p);
  for (const p of inFlight) p.then(drop, () => {});
}

export class MvccStore implements ApplyTarget {
  readonly index = new TreeIndex();
  currentRev = 1;
  compactMainRev = -1;
  readonly leaseExists: ((lease: bigint) => boolean) | undefined;

  private db: RocksBackend;
  private meta: ColumnHandle;
  private appliedIdx = 0;
  private appliedTerm = 0;
  private finishedCompactRev = -1;
  private readonly alarmSet = new Map<string, AlarmMember>();
  private readonly listeners = new Map<ApplyListener, { prevKv: PrevKvWanted }>();
  private readonly quotaBytes: number;
  private readonly syncWrites: boolean;
  private readonly compactionSliceKeys: number;
  private readonly syncReadMaxKeys: number;
  private readonly rangeBatchKeys: number;
  private readonly rangeThreads: RangeReadThreads | undefined;
  private readonly extraColumns: readonly string[];

  /** Writes of the batch being applied, by main revision then sub, readable before commit. */
  private pending: Map<number, Buffer[]> | undefined;
  private batch: WriteBatch | undefined;
  private compactionChain: Promise<void> = Promise.resolve();
  private compactionsQueued = 0;
  /** Set while defragmentation swaps the database: applies and reads wait for it. */
  private exclusive: Promise<void> | undefined;
  private applyQueue: Promise<unknown> = Promise.resolve();
  private appliesWaiting = 0;
  private failure: Error | undefined;
  private closing = false;
  /** Views read by other threads (shareView): close() stops them and waits for their release. */
  private readonly sharedViews = new Set<{ abort: () => void; done: Promise<void> }>();
  /** etcd's backend size for the same writes (what the quota and Status measure). */
  private sizeModel = new BboltSizeModel();
  /** The defragmentation running, if any (concurrent calls share it). */
  private defragRun: Promise<void> | undefined;
  /** The directory the open database lives in: `location`, or its defragmented copy's. */
  private dbDir: string;
  /** Closing and removing the database a defragmentation replaced. */
  private cleanup: Promise<void> = Promise.resolve();
  /** How long the last defragmentation's phases took, in milliseconds: copy, catch_up, held (logs, benchmarks). */
  lastDefragPhasesMs: Record<string, number> = {};
  /** The model's Size() as last written to the meta column. */
  private savedModelSize = 0;
  private readonly tuning: RocksTuning;
  /** Reads holding RocksDB iterators or pool reads across awaits; defragmentation waits for them. */
  private readers = 0;

  private constructor(
    readonly location: string,
    db: RocksBackend,
    options: MvccStoreOptions,
  ) {
    this.db = db;
    this.dbDir = location;
    this.meta = db.columns[META_COLUMN]!;
    this.quotaBytes = options.quotaBytes ?? DEFAULT_QUOTA_BYTES;
    this.syncWrites = options.syncWrites ?? false;
    this.leaseExists = options.leaseExists;
    this.compactionSliceKeys = options.compactionSliceKeys ?? 10_000;
    this.syncReadMaxKeys = options.syncReadMaxKeys ?? 256;
    // 1024: about a millisecond of index walk per turn (a chunk's reads are on other threads).
    this.rangeBatchKeys = options.rangeBatchKeys ?? 1024;
    this.rangeThreads = options.rangeReadThread === false ? undefined : new RangeReadThreads();
    this.extraColumns = options.extraColumns ?? [];
    this.tuning = tuningOf(options);
    this.onCommit = options.onCommit;
  }

  readonly opCounts: MvccOpCounts = { put: 0, delete: 0, txn: 0, range: 0 };
  private readonly onCommit: ((seconds: number) => void) | undefined;

  /** How long the last open() took, by phase, in milliseconds (logs and benchmarks). */
  readonly openPhasesMs: Record<string, number> = {};

  /** Where the last open() took the key index from, and why not from a checkpoint (logs, tests). */
  indexSource: { from: "checkpoint" | "scan"; note?: string } = { from: "scan" };

  static async open(location: string, options: MvccStoreOptions = {}): Promise<MvccStore> {
    const started = performance.now();
    await recoverInterruptedDefrag(location);
    const checkpoint = await readIndexCheckpoint(location);
    const read = performance.now();
    const columns = [META_COLUMN, ...(options.extraColumns ?? [])];
    const db = await RocksBackend.open(location, columns, tuningOf(options));
    // Removed once the database is open (an open that fails keeps it for the next try) and
    // before anything can write to it: a checkpoint exists only while its database is closed.
    if (checkpoint !== undefined) await removeIndexCheckpoint(location);
    const store = new MvccStore(location, db, options);
    if (checkpoint !== undefined) store.openPhasesMs.checkpointRead = read - started;
    store.openPhasesMs.rocksdb = performance.now() - read;
    store.restore(checkpoint);
    return store;
  }

  // --- state ---------------------------------------------------------------------------------

  get revision(): number {
    return this.currentRev;
  }

  /** The compacted revision, -1 before the first compaction (etcd reports it the same way). */
  get compactRevision(): number {
    return this.compactMainRev;
  }

  get appliedIndex(): number {
    return this.appliedIdx;
  }

  get appliedIndexTerm(): number {
    return this.appliedTerm;
  }

  /** Keys live at the current revision (walks the whole index). */
  countLiveKeys(): number {
    return this.index.liveCount();
  }

  alarms(type: number = AlarmType.NONE): AlarmMember[] {
    const all = [...this.alarmSet.values()];
    return type === AlarmType.NONE ? all : all.filter((a) => a.alarm === type);
  }

  /** The lease of every live key that has one, for a lessor rebuilding its key sets. */
  *leasedKeys(): IterableIterator<{ key: Buffer; lease: bigint }> {
    for (const [key, ki] of this.index.entries()) {
      if (ki.isLive && ki.lease !== 0n) yield { key: Buffer.from(key, "latin1"), lease: ki.lease };
    }
  }

  /**
   * Every row of the extra columns (another state machine's: leases, members, auth), read at
   * start-up from this open database rather than by opening it a second time.
   */
  extraColumnRows(): Map<string, { key: Buffer; value: Buffer }[]> {
    const out = new Map<string, { key: Buffer; value: Buffer }[]>();
    for (const name of this.extraColumns) {
      const rows: { key: Buffer; value: Buffer }[] = [];
      const it = this.db.iterator({ column: this.db.columns[name]! });
      try {
        for (;;) {
          const chunk = it.nextSync(1000);
          for (let i = 0; i < chunk.keys.length; i++)
            rows.push({ key: chunk.keys[i]!, value: chunk.values[i]! });
          if (chunk.finished) break;
        }
      } finally {
        it.close();
      }
      out.set(name, rows);
    }
    return out;
  }

  /** Registers a listener for every durable write txn; returns the unsubscribe function. */
  subscribe(listener: ApplyListener, options: { prevKv?: PrevKvWanted } = {}): () => void {
    this.listeners.set(listener, { prevKv: options.prevKv ?? false });
    return () => this.listeners.delete(listener);
  }

  // --- restore -------------------------------------------------------------------------------

  /** What the database says of itself: what an index checkpoint must have been written in. */
  private diskState(): CheckpointState {
    const metaValues = this.db.getManySync(
      [META_CONSISTENT_INDEX, META_TERM, META_SCHEDULED_COMPACT, META_FINISHED_COMPACT, META_MODEL_SIZE],
      this.meta,
    );
    const [index, term, scheduled, finished, modelSize] = metaValues;
    const it = this.db.iterator({ reverse: true, keysOnly: true });
    let lastRow = 0;
    try {
      const chunk = it.nextSync(1);
      if (chunk.keys.length > 0) lastRow = mainOfKey(chunk.keys[0]!);
    } finally {
      it.close();
    }
    return {
      lastRow,
      appliedIndex: index ? readUint64Bytes(index) : 0,
      appliedTerm: term ? readUint64Bytes(term) : 0,
      finishedCompact: finished ? mainOfKey(finished) : -1,
      scheduledCompact: scheduled ? mainOfKey(scheduled) : -1,
      modelSize: modelSize ? readUint64Bytes(modelSize) : 0,
    };
  }

  private restore(checkpoint: Buffer | undefined): void {
    const disk = this.diskState();
    this.appliedIdx = disk.appliedIndex;
    this.appliedTerm = disk.appliedTerm;
    this.finishedCompactRev = disk.finishedCompact;
    const scheduledRev = disk.scheduledCompact;
    this.compactMainRev = this.finishedCompactRev;
    this.restoreAlarms();
    this.savedModelSize = disk.modelSize;
    const started = performance.now();
    const note = checkpoint === undefined ? "no checkpoint" : this.restoreFromCheckpoint(checkpoint, disk);
    if (note === undefined) {
      this.indexSource = { from: "checkpoint" };
      this.openPhasesMs.checkpoint = performance.now() - started;
    } else {
      this.indexSource = { from: "scan", note };
      // One pass over the key space rebuilds both the key index and the size model; the index is
      // built as the pass goes, so whatever the size model reads, the pass is finished here.
      const revisions = this.restoreIndex();
      this.sizeModel.reopen(revisions, this.savedModelSize);
      while (revisions.next().done !== true);
      this.openPhasesMs.scan = performance.now() - started;
    }
    if (this.currentRev < this.compactMainRev) this.currentRev = this.compactMainRev;
    if (scheduledRev > this.finishedCompactRev) {
      // A compaction was cut short: its revision already counts as compacted; finish it.
      this.compactMainRev = scheduledRev;
      if (this.currentRev < scheduledRev) this.currentRev = scheduledRev;
      this.scheduleCompaction(scheduledRev);
    }
  }

  /**
   * The key index and the size model from a checkpoint written when the database last closed,
   * instead of the scan; undefined when done, else why not (nothing is changed then). Trusted
   * only if the database is in the state the checkpoint was written in (same applied index and
   * term, compaction marks, saved model size and last revision row) and its CRC holds: what the
   * scan would rebuild from that database is then what the closing store held.
   */
  private restoreFromCheckpoint(image: Buffer, disk: CheckpointState): string | undefined {
    const claimed = checkpointState(image);
    if (typeof claimed === "string") return claimed;
    if (!sameState(claimed, disk))
      return `stale: written at ${JSON.stringify(claimed)}, the database is at ${JSON.stringify(disk)}`;
    const checkpoint = decodeCheckpoint(image);
    if (typeof checkpoint === "string") return checkpoint;
    let model: BboltSizeModel;
    try {
      model = BboltSizeModel.fromShape(checkpoint.modelShape, checkpoint.modelElements);
    } catch (err) {
      return `size model: ${(err as Error).message}`;
    }
    this.index.load(checkpoint.keys);
    this.sizeModel = model;
    // What the scan sets: the main revision of the last row, or with no row the initial
    // revision 1 (a store closed before its first write; revision 0 here numbered every later
    // write one lower than the other members and etcd, and refused a compaction to 1).
    if (disk.lastRow > 0) this.currentRev = disk.lastRow;
    return undefined;
  }

  /**
   * The index checkpoint to write once the database is closed, or undefined when the index may
   * not be what a scan of the database would rebuild: after a failure (the index may hold
   * writes that never reached disk), with a compaction unfinished, or with a size model that no
   * longer models the tree (it could not list the revisions).
   */
  private checkpointImage(): Buffer | undefined {
    if (this.failure !== undefined || !this.sizeModel.exact || this.compactionsQueued > 0) return undefined;
    const disk = this.diskState();
    if (disk.scheduledCompact > disk.finishedCompact) return undefined;
    // The index and the model must list the same revisions (both follow every write and
    // compaction); a disagreement means one of them is wrong, and the scan is the cure.
    let indexRevisions = 0;
    for (const [, ki] of this.index.entries()) indexRevisions += revisionCount(ki);
    let modelNumbers = 0;
    for (const elements of this.sizeModel.leaves()) modelNumbers += elements.length;
    if (indexRevisions * 3 !== modelNumbers) return undefined;
    // The model as the next open would rebuild it from these revisions (the reopen's layout,
    // not the live model's), so that a checkpoint's open and a scan's give the same model.
    const revisions = new Float64Array(modelNumbers);
    let at = 0;
    for (const elements of this.sizeModel.leaves()) {
      revisions.set(elements, at);
      at += elements.length;
    }
    const reopened = new BboltSizeModel();
    reopened.reopenFromElements(revisions, disk.modelSize);
    if (!reopened.exact) return undefined;
    return encodeCheckpoint(disk, () => this.index.values(), this.index.size, {
      shape: reopened.shape(),
      leaves: () => reopened.leaves(),
    });
  }

  private restoreAlarms(): void {
    const it = this.db.iterator({
      column: this.meta,
      gte: META_ALARM_PREFIX,
      lt: prefixEnd(META_ALARM_PREFIX),
    });
    try {
      for (;;) {
        const chunk = it.nextSync(1000);
        for (const key of chunk.keys) {
          const member = decodeAlarmKey(key);
          this.alarmSet.set(alarmId(member), member);
        }
        if (chunk.finished) break;
      }
    } finally {
      it.close();
    }
  }

  /**
   * etcd's restore: replays every stored revision, oldest first, into the key index, yielding
   * each revision's key and value length on the way (the size model's input, so that open reads
   * the key space once). The yielded object is reused: a consumer must read it before the next.
   */
  private *restoreIndex(): Generator<{ key: Buffer; valueLength: number }> {
    const fields: IndexFields = { key: "", createRevision: 0, version: 0, lease: 0n };
    const revision: { key: Buffer; valueLength: number } = { key: EMPTY, valueLength: 0 };
    const it = this.db.iterator({});
    try {
      for (;;) {
        const chunk = it.nextSync(RESTORE_CHUNK);
        for (let i = 0; i < chunk.keys.length; i++) {
          const revKey = chunk.keys[i]!;
          const value = chunk.values[i]!;
          const kv = decodeIndexFields(value, fields);
          const main = mainOfKey(revKey);
          const sub = subOfKey(revKey);
          const key = kv.key;
          this.index.replay(key, main, sub, isTombstoneKey(revKey), kv.createRevision, kv.version, kv.lease);
          this.currentRev = main;
          revision.key = revKey;
          revision.valueLength = value.length;
          yield revision;
        }
        if (chunk.finished) break;
      }
    } finally {
      it.close();
    }
  }

  // --- apply ---------------------------------------------------------------------------------

  /** Applies one committed entry; see applyBatch. */
  async apply(entry: ApplyEntry): Promise<ApplyResult> {
    const [result] = await this.applyBatch([entry]);
    return result!;
  }

  /**
   * Applies committed entries in order, in one RocksDB batch with the new applied index.
   * Entries at or below the applied index are skipped (WAL replay). A request error (bad
   * request, compacted revision, no space...) is that entry's result and changes nothing;
   * an I/O failure rejects and leaves the store unusable until reopened.
   */
  applyBatch(entries: readonly ApplyEntry[]): Promise<ApplyResult[]> {
    if (this.exclusive === undefined && this.appliesWaiting === 0) {
      try {
        return Promise.resolve(this.applyNow(entries));
      } catch (err) {
        return Promise.reject(err);
      }
    }
    // Keep applies in submission order while a defragmentation holds the store.
    this.appliesWaiting++;
    const run = this.applyQueue.then(async () => {
      while (this.exclusive !== undefined) await this.exclusive;
      this.appliesWaiting--;
      return this.applyNow(entries);
    });
    this.applyQueue = run.catch(() => undefined);
    return run;
  }

  private applyNow(entries: readonly ApplyEntry[]): ApplyResult[] {
    this.assertUsable();
    const results: ApplyResult[] = [];
    const applied: Change[][] = [];
    const revisions: number[] = [];
    const compactions: number[] = [];
    let lastIndex = this.appliedIdx;
    let lastTerm = this.appliedTerm;
    this.batch = this.db.batch();
    this.pending = new Map();
    try {
      for (const entry of entries) {
        if (entry.index <= lastIndex) {
          results.push({ status: "skipped" });
          continue;
        }
        lastIndex = entry.index;
        lastTerm = entry.term;
        if (entry.request === undefined) {
          results.push({ status: "applied", response: undefined });
          continue;
        }
        const txn = new WriteTxn(this, this.currentRev);
        const stagedBefore = this.batch.length;
        try {
          entry.check?.();
          const response = this.execute(entry.request, txn, compactions);
          results.push({ status: "applied", response });
        } catch (err) {
          if (!isEtcdError(err)) throw err;
          // Request checks all run before the first write, so a refused request changed nothing;
          // one that fails after writing (an `external` apply, say) cannot be undone in the index.
          if (txn.changes.length > 0 || this.batch.length !== stagedBefore) {
            throw new Error(`mvcc: request failed after writing: ${err.message}`);
          }
          results.push({ status: "failed", error: err });
        }
        if (txn.changes.length > 0) {
          this.currentRev = txn.beginRev + 1;
          applied.push(txn.changes);
          revisions.push(this.currentRev);
        }
      }
      // Anything written besides the applied index is a bbolt commit in etcd (its saveIndex
      // goes with the mvcc write; reads and no-ops write nothing).
      if (this.batch.length > 0) {
        this.sizeModel.touch();
        this.sizeModel.commit();
        // etcd's file keeps its size across a restart: so does the model (see open()).
        if (this.sizeModel.size !== this.savedModelSize) {
          this.savedModelSize = this.sizeModel.size;
          this.batch.put(META_MODEL_SIZE, uint64Bytes(this.savedModelSize), this.meta);
        }
      }
      if (lastIndex !== this.appliedIdx) {
        this.batch.put(META_CONSISTENT_INDEX, uint64Bytes(lastIndex), this.meta);
        this.batch.put(META_TERM, uint64Bytes(lastTerm), this.meta);
      }
      let wantPrev = false;
      for (const o of this.listeners.values()) wantPrev ||= wanted(o.prevKv);
      const events = this.listeners.size > 0 ? this.buildEvents(applied, wantPrev) : [];
      const writeStart = performance.now();
      stageTimeline?.mark("rocks.write");
      this.batch.write(this.syncWrites);
      stageTimeline?.mark("rocks.written");
      this.onCommit?.((performance.now() - writeStart) / 1000);
      this.batch = undefined;
      this.appliedIdx = lastIndex;
      this.appliedTerm = lastTerm;
      for (const rev of compactions) this.scheduleCompaction(rev);
      for (let i = 0; i < events.length; i++) {
        this.notify({ revision: revisions[i]!, events: events[i]!, prevKvs: wantPrev });
      }
      return results;
    } catch (err) {
      // The index may hold changes that never reached disk: only a reopen rebuilds it truthfully.
      this.batch?.discard();
      this.batch = undefined;
      this.failure = err instanceof Error ? err : new Error(String(err));
      throw err;
    } finally {
      this.pending = undefined;
    }
  }

  private execute(request: MvccRequest, txn: WriteTxn, compactions: number[]): MvccResponse {
    if ("put" in request) {
      this.refuseWhenAlarmed(true);
      this.opCounts.put++;
      return applyPut(this, txn, request.put);
    }
    if ("deleteRange" in request) {
      this.refuseWhenAlarmed(false);
      this.opCounts.delete++;
      return executeDeleteRange(this, txn, request.deleteRange);
    }
    if ("txn" in request) {
      this.refuseWhenAlarmed(txnCost(request.txn) > 0);
      this.opCounts.txn++;
      return applyTxn(this, txn, request.txn);
    }
    if ("compaction" in request) {
      this.refuseWhenAlarmed(false);
      return this.applyCompaction(request.compaction, compactions);
    }
    if ("alarm" in request) return this.applyAlarm(request.alarm);
    if ("deleteKeys" in request) return deleteKeys(txn, this.index, request.deleteKeys.keys);
    return request.external(this.externalContext(txn));
  }

  /** etcd's capped and corrupt appliers: what an active alarm refuses. */
  private refuseWhenAlarmed(writesSpace: boolean): void {
    if (this.alarmSet.size === 0) return;
    for (const alarm of this.alarmSet.values()) {
      if (alarm.alarm === AlarmType.CORRUPT) throw new EtcdError("Corrupt");
    }
    if (writesSpace && this.alarms(AlarmType.NOSPACE).length > 0) throw new EtcdError("NoSpace");
  }

  private externalContext(txn: WriteTxn): ExternalApply {
    const column = (name: string): ColumnHandle => {
      if (!this.extraColumns.includes(name)) throw new Error(`mvcc: column ${name} was not opened`);
      return this.db.columns[name]!;
    };
    return {
      put: (name, key, value) => this.batch!.put(key, value, column(name)),
      del: (name, key) => this.batch!.del(key, column(name)),
      get: (name, key) => this.db.getManySync([key], column(name))[0],
      deleteKeys: (keys) => deleteKeys(txn, this.index, keys),
      revision: txn.beginRev,
    };
  }

  stage(main: number, sub: number, key: Buffer, value: Buffer): void {
    this.batch!.put(key, value);
    this.sizeModel.put(key, value.length);
    let subs = this.pending!.get(main);
    if (subs === undefined) {
      subs = [];
      this.pending!.set(main, subs);
    }
    subs[sub] = value;
  }

  readKeyValues(hits: RangeHit[]): KeyValue[] {
    const values: (Buffer | undefined)[] = new Array(hits.length);
    const missing: Buffer[] = [];
    const missingAt: number[] = [];
    for (let i = 0; i < hits.length; i++) {
      const hit = hits[i]!;
      const staged = this.pending?.get(hit.main)?.[hit.sub];
      if (staged !== undefined) values[i] = staged;
      else {
        missing.push(revisionKey(hit.main, hit.sub));
        missingAt.push(i);
      }
    }
    if (missing.length > 0) {
      const read = this.db.getManySync(missing);
      for (let j = 0; j < read.length; j++) values[missingAt[j]!] = read[j];
    }
    return values.map((v, i) => decodeOrFail(v, hits[i]!));
  }

  private applyCompaction(c: CompactionRequest, compactions: number[]): CompactionResponse {
    const rev = c.revision;
    if (rev <= this.compactMainRev) throw new EtcdError("Compacted");
    if (rev > this.currentRev) throw new EtcdError("FutureRev");
    this.compactMainRev = rev;
    this.batch!.put(META_SCHEDULED_COMPACT, revisionKey(rev, 0), this.meta);
    compactions.push(rev);
    return { header: header(this.currentRev) };
  }

  private applyAlarm(a: AlarmRequest): AlarmResponse {
    const response: AlarmResponse = { header: header(this.currentRev), alarms: [] };
    if (a.action === AlarmAction.GET) {
      response.alarms = this.alarms(a.alarm);
    } else if (a.action === AlarmAction.ACTIVATE) {
      const member = { memberID: a.memberID, alarm: a.alarm };
      const id = alarmId(member);
      const existing = this.alarmSet.get(id);
      if (existing !== undefined) response.alarms.push(existing);
      else {
        this.alarmSet.set(id, member);
        this.batch!.put(encodeAlarmKey(member), EMPTY, this.meta);
        response.alarms.push(member);
      }
    } else if (a.action === AlarmAction.DEACTIVATE) {
      const id = alarmId({ memberID: a.memberID, alarm: a.alarm });
      const existing = this.alarmSet.get(id);
      if (existing !== undefined) {
        this.alarmSet.delete(id);
        this.batch!.del(encodeAlarmKey(existing), this.meta);
        response.alarms.push(existing);
      }
    }
    return response;
  }

  private buildEvents(applied: Change[][], wantPrev: boolean): Event[][] {
    const prevHits: RangeHit[] = [];
    const prevOf: (Event | undefined)[] = [];
    const result = applied.map((changes) =>
      changes.map((change) => {
        const event: Event = { type: change.type, kv: change.kv, prevKv: undefined };
        if (wantPrev && change.prevMain >= 0) {
          prevHits.push({ main: change.prevMain, sub: change.prevSub } as RangeHit);
          prevOf.push(event);
        }
        return event;
      }),
    );
    if (prevHits.length > 0) {
      const prevKvs = this.readKeyValues(prevHits);
      for (let i = 0; i < prevKvs.length; i++) prevOf[i]!.prevKv = prevKvs[i];
    }
    return result;
  }

  private notify(txn: AppliedTxn): void {
    for (const [listener, options] of this.listeners) {
      const delivered =
        options.prevKv !== false || !txn.prevKvs
          ? txn
          : {
              revision: txn.revision,
              events: txn.events.map((e) => ({ ...e, prevKv: undefined })),
              prevKvs: false,
            };
      try {
        listener(delivered);
      } catch (err) {
        // A listener bug must not look like a failed apply (the batch is already durable).
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  /**
   * fsyncs RocksDB's WAL: everything applied before the call survives a machine crash; resolves
   * with the applied index it covers. The fsync runs on a read thread when there are any (the
   * member's thread serves calls meanwhile): RocksDB syncs its WAL up to the worker's write,
   * which comes after every batch this thread wrote before asking (the meta batch below too).
   */
  async syncToDisk(): Promise<number> {
    this.assertUsable();
    const applied = this.appliedIdx;
    const batch = this.db.batch();
    batch.put(META_CONSISTENT_INDEX, uint64Bytes(applied), this.meta);
    batch.put(META_TERM, uint64Bytes(this.appliedTerm), this.meta);
    const threads = this.rangeThreads;
    if (threads === undefined) {
      batch.write(true);
      return applied;
    }
    batch.write(false);
    // A defragmentation's switch waits for it, as for a read: the database stays open.
    this.readers++;
    try {
      await threads.sync(this.db.handle);
    } finally {
      this.readers--;
    }
    return applied;
  }

  /**
   * Gets a read thread ready for the next syncToDisk, which the member's Raft loop waits for (a
   * snapshot is near): started and attached now, kept until that sync (RangeReadThreads says
   * what a start inside the sync cost). Changes nothing the sync covers: it still writes its
   * batch and syncs RocksDB's WAL after it, on whichever thread. Nothing to prepare without
   * threads (the sync is then a synced write on this thread).
   */
  prepareSync(): void {
    const threads = this.rangeThreads;
    if (threads === undefined || this.closing || this.failure !== undefined) return;
    // As for a read: a defragmentation's switch waits while the thread attaches this database.
    this.readers++;
    threads
      .prepareSync(this.db.handle)
      // A failed attach is not the sync's failure: the sync attaches again and reports its own.
      .catch(() => undefined)
      .finally(() => this.readers--);
  }

  // --- reads ---------------------------------------------------------------------------------

  /** What every Range does once no defragmentation holds the store: count it, fix its revision. */
  private startRange(r: RangeRequest): { curRev: number; rev: number; bounds: KeyBounds } {
    this.assertUsable();
    this.opCounts.range++;
    const curRev = this.currentRev;
    const rev = resolveRangeRevision(r.revision, curRev, this.compactMainRev);
    return { curRev, rev, bounds: keyBounds(r.key, r.rangeEnd) };
  }

  /** A Range served from local state (serializable; linearizable once the caller waited for ReadIndex). */
  async range(r: RangeRequest): Promise<RangeResponse> {
    if (this.exclusive !== undefined) await this.passExclusive();
    const { curRev, rev, bounds } = this.startRange(r);
    if (r.countOnly) {
      return { header: header(curRev), kvs: [], more: false, count: this.index.count(bounds, rev) };
    }
    const { hits, total } = this.index.revisions(bounds, rev, indexLimit(r));
    const needValues = !r.keysOnly || r.sortTarget === SortTarget.VALUE;
    let kvs: KeyValue[];
    if (!needValues && hits.every(isLatest)) kvs = hits.map(keyValueFromIndex);
    else if (hits.length <= this.syncReadMaxKeys) kvs = this.readKeyValues(hits);
    else kvs = await this.reading(() => this.readKeyValuesAsync(hits, rev));
    const shaped = shapeRange(r, kvs);
    return { header: header(curRev), kvs: shaped.kvs, more: shaped.more, count: total };
  }

  /**
   * The same answer as `range`, with its KeyValues encoded in chunks (RangeResponse field 2),
   * for the gRPC handler. A large answer never holds the event loop for its whole length:
   * values come from RocksDB a chunk at a time off the loop and, in index order (no filter or
   * sort), go into the answer as stored (stored revisions are encodeKeyValue's bytes, which
   * are the answer's), with no KeyValue object for them (keys_only: from the index for a key's
   * latest revision); with a revision filter or a sort, shaped on the index first (rangeShaped).
   */
  rangeEncoded(r: RangeRequest): Promise<EncodedRangeResponse> {
    // Not held: every part is bytes.
    return this.rangeParts(r, false) as Promise<EncodedRangeResponse>;
  }

  /**
   * As rangeEncoded, but a large answer's chunks read on the threads stay there (HeldPart) until
   * the answer is sent: the member's thread takes each as it goes out rather than receiving the
   * whole answer before its first byte leaves (range-read-thread.ts says why that matters). The
   * caller must take or drop every HeldPart.
   */
  rangeHeld(r: RangeRequest): Promise<EncodedRangeResponse<Buffer | HeldPart>> {
    return this.rangeParts(r, true);
  }

  private async rangeParts(r: RangeRequest, hold: boolean): Promise<EncodedRangeResponse<Buffer | HeldPart>> {
    // count_only: the plain walk below counts as etcd does (the filters and the sort do not
    // change the count).
    if (!inIndexOrder(r) && !r.countOnly) return this.rangeShaped(r, hold);
    if (this.exclusive !== undefined) await this.passExclusive();
    const { curRev, rev, bounds } = this.startRange(r);
    // count_only: the same walk, no KeyValue taken, `more` false as in etcd.
    const limit = r.countOnly ? 0 : r.limit > 0 ? r.limit : Number.POSITIVE_INFINITY;
    const moreThan = (total: number) => !r.countOnly && total > limit;
    // keys_only: a key's latest revision comes from the index alone, no value read.
    const fromIndex = (hits: readonly RangeHit[]) => r.keysOnly && hits.every(isLatest);
    const encode = (hits: readonly RangeHit[], values: readonly (Buffer | undefined)[] | undefined) =>
      values === undefined
        ? keyValueFields(
            2,
            hits.map((h) => encodeKeyValue(keyValueFromIndex(h))),
          )
        : r.keysOnly
          ? keyValueFields(
              2,
              storedOrFail(values, (i) => hits[i]!, rev, this.compactMainRev).map(withoutValue),
            )
          : keyValueFields(
              2,
              storedOrFail(values, (i) => hits[i]!, rev, this.compactMainRev),
            );
    const first = this.index.revisionsBatch(bounds, rev, undefined, this.rangeBatchKeys);
    if (first.done && Math.min(first.hits.length, limit) <= this.syncReadMaxKeys) {
      const hits = first.hits.slice(0, limit);
      const values = fromIndex(hits)
        ? undefined
        : this.db.getManySync(hits.map((h) => revisionKey(h.main, h.sub)));
      return {
        header: header(curRev),
        kvParts: hits.length > 0 ? [encode(hits, values)] : [],
        more: moreThan(first.hits.length),
        count: first.hits.length,
      };
    }
    // Index batches and reads alternate, so no step holds the loop for the whole answer and no
    // hit is kept once its chunk is written. etcd counts past the limit.
    // One revision's snapshot: every hit is the key's latest revision at `rev`, fixed when the
    // Range started (later writes only add revisions above it, and a stored revision is never
    // rewritten), so reading them across awaits answers as of `rev`; only a compaction past
    // `rev` can take one away, and then the Range fails Compacted (checked per batch and for
    // every value found missing), as etcd's would. The database stays open meanwhile: close and
    // a defragmentation's switch wait for `readers`.
    const handle = this.db.handle;
    // Answers of more than one index batch only: a worker's start (tens of milliseconds after
    // it was idle) would cost a mid-sized Range more than its reads on libuv's pool.
    const threads = first.done ? undefined : this.rangeThreads;
    const threadPart = (got: ChunkRead): Buffer => this.threadPart(got, rev);
    if (threads !== undefined && !r.keysOnly) {
      return this.reading(() =>
        this.rangeOnThreads(threads, handle, bounds, rev, limit, first, threadPart, hold).then((got) => ({
          header: header(curRev),
          kvParts: got.kvParts,
          more: moreThan(got.total),
          count: got.total,
        })),
      );
    }
    const readChunk = (slice: RangeHit[]): Promise<Buffer> => {
      if (fromIndex(slice)) return Promise.resolve(encode(slice, undefined));
      if (threads !== undefined) {
        return threads.read(handle, slice, r.keysOnly).then(threadPart);
      }
      return this.db
        .getMany(slice.map((h) => revisionKey(h.main, h.sub)))
        .then((values) => encode(slice, values));
    };
    return this.reading(async () => {
      const kvParts: Buffer[] = [];
      // Chunks read ahead while the oldest is taken: one per read thread, and one more queued
      // so that none waits while this thread takes an answer; on libuv's pool one, so a long
      // Range leaves the rest of the pool (4 threads) to the WAL's fsyncs of the writes beside it.
      const depth = threads === undefined ? 2 : threads.count + 1;
      const ahead: Promise<Buffer>[] = [];
      let batch = first;
      let total = 0;
      let taken = 0;
      for (;;) {
        total += batch.hits.length;
        const take = batch.hits.slice(0, Math.max(0, Math.min(batch.hits.length, limit - taken)));
        taken += take.length;
        for (let i = 0; i < take.length; i += ASYNC_READ_CHUNK) {
          const read = readChunk(take.slice(i, i + ASYNC_READ_CHUNK));
          // A read ahead whose answer is never awaited (the Range failed first) must not become
          // an unhandled rejection; awaiting it still throws.
          read.catch(() => {});
          ahead.push(read);
          if (ahead.length >= depth) kvParts.push(await ahead.shift()!);
        }
        if (batch.done) break;
        if (take.length === 0) await yieldToEventLoop();
        // A compaction past the read revision meanwhile took revisions the rest would show.
        if (rev < this.compactMainRev) throw new EtcdError("Compacted");
        batch = this.index.revisionsBatch(bounds, rev, batch.last, this.rangeBatchKeys);
      }
      for (const read of ahead) kvParts.push(await read);
      return { header: header(curRev), kvParts, more: moreThan(total), count: total };
    });
  }

  /** A read thread's chunk of an answer at `rev`, or why it has none. */
  private threadPart(got: ChunkRead, rev: number): Buffer {
    if ("part" in got) return got.part;
    if ("held" in got) throw new Error("mvcc: a range chunk held that was not asked to be");
    if (rev < this.compactMainRev) throw new EtcdError("Compacted");
    throw notInRocksDb(got.missing);
  }

  /**
   * rangeParts for a Range with a revision filter, or sorted by key (descending), create or mod
   * revision or version: shaped on the key index, which knows each visible revision's mod and
   * create revisions and version (as etcd's keyIndex does), so no value is read before the
   * answer's order is known. The index is walked a batch of keys per turn of the event loop,
   * the hits kept as numbers (no object per key), sorted in slices (sortPositions), then the
   * values read and encoded in that order a chunk at a time, on the read threads for a large
   * answer, as a plain Range's are: no step holds the loop for the whole answer. The same
   * answer as `range` (shapeRange over KeyValues; range-encoding.test.ts compares them).
   * As in the plain walk, the revisions visible at `rev` stay readable across the awaits
   * unless a compaction passes `rev` (then Compacted, checked per batch and per missing value).
   */
  private async rangeShaped(
    r: RangeRequest,
    hold: boolean,
  ): Promise<EncodedRangeResponse<Buffer | HeldPart>> {
    if (this.exclusive !== undefined) await this.passExclusive();
    const { curRev, rev, bounds } = this.startRange(r);
    const order = sortOrderOf(r);
    const target = r.sortTarget;
    // Everything when filtered or sorted afterwards, else one past the limit (etcd's
    // executeRange; a non-key target with no order sorts just those).
    const keep = indexLimit(r) > 0 ? indexLimit(r) : Number.POSITIVE_INFINITY;
    const mains: number[] = [];
    const subs: number[] = [];
    const sortBy: number[] = [];
    // etcd counts every revision visible at `rev` in range, before the filters and the limit.
    let total = 0;
    const each = (main: number, sub: number, created: number, version: number) => {
      total++;
      if (mains.length >= keep || !passesRevisionFilters(r, main, created)) return;
      mains.push(main);
      subs.push(sub);
      if (target === SortTarget.MOD) sortBy.push(main);
      else if (target === SortTarget.CREATE) sortBy.push(created);
      else if (target === SortTarget.VERSION) sortBy.push(version);
    };
    const handle = this.db.handle;
    return this.reading(async () => {
      let last: string | undefined;
      for (;;) {
        const batch = this.index.revisionsEach(bounds, rev, last, this.rangeBatchKeys, each);
        if (batch.done) break;
        last = batch.last;
        await yieldToEventLoop();
        // A compaction past the read revision meanwhile took revisions the rest would show.
        if (rev < this.compactMainRev) throw new EtcdError("Compacted");
      }
      const n = mains.length;
      // Sorted by value: the values are needed before the order is known. A large answer is
      // read and sorted on a read thread (only its positions come back); else the values are
      // read a chunk per turn on libuv's pool, kept as stored until encoded, and sorted here.
      const threads = n > this.rangeBatchKeys ? this.rangeThreads : undefined;
      const byValueThere = target === SortTarget.VALUE && threads !== undefined;
      const stored =
        target === SortTarget.VALUE && !byValueThere ? await this.readStored(rev, mains, subs) : undefined;
      let at: (i: number) => number = (i) => i;
      if (order === SortOrder.DESCEND && target === SortTarget.KEY) at = (i) => n - 1 - i;
      else if (byValueThere) {
        const keys = Buffer.allocUnsafeSlow(n * REVISION_KEY_LENGTH);
        for (let from = 0; from < n; from += ASYNC_READ_CHUNK) {
          if (from > 0) await yieldToEventLoop();
          for (let i = from; i < Math.min(n, from + ASYNC_READ_CHUNK); i++) {
            writeRevisionKey(keys, i * REVISION_KEY_LENGTH, mains[i]!, subs[i]!);
          }
        }
        const got = await threads.sortByValue(handle, keys, order === SortOrder.DESCEND);
        if ("missing" in got) {
          if (rev < this.compactMainRev) throw new EtcdError("Compacted");
          throw notInRocksDb(got.missing);
        }
        const positions = got.order;
        at = (i) => positions[i]!;
      } else if (order !== SortOrder.NONE) {
        let compare = (a: number, b: number) => sortBy[a]! - sortBy[b]!;
        if (stored !== undefined) compare = (a, b) => stored.compareValues(a, b);
        // A slice's comparisons cost about as much as walking a batch of keys (~0.1-0.3 ms):
        // numbers compare in a few ns, values through Buffer#compare in ~0.3-0.5 us.
        const slice = this.rangeBatchKeys * (stored === undefined ? 8 : 1);
        const sorting = sortPositions(n, compare, order === SortOrder.DESCEND, slice);
        let step = sorting.next();
        while (!step.done) {
          await yieldToEventLoop();
          step = sorting.next();
        }
        const positions = step.value;
        at = (i) => positions[i]!;
      }
      const out = r.limit > 0 ? Math.min(n, r.limit) : n;
      const more = r.limit > 0 && n > r.limit;
      if (stored !== undefined) {
        const kvParts: Buffer[] = [];
        for (let from = 0; from < out; from += ENCODE_CHUNK) {
          if (from > 0) await yieldToEventLoop();
          const chunk: Buffer[] = [];
          for (let i = from; i < Math.min(out, from + ENCODE_CHUNK); i++) {
            const kv = stored.kv(at(i));
            chunk.push(r.keysOnly ? withoutValue(kv) : kv);
          }
          kvParts.push(keyValueFields(2, chunk));
        }
        return { header: header(curRev), kvParts, more, count: total };
      }
      const kvParts = await this.readInOrder(handle, rev, out, r.keysOnly, hold, (from, keys) => {
        const count = keys.length / REVISION_KEY_LENGTH;
        for (let i = 0; i < count; i++) {
          const p = at(from + i);
          writeRevisionKey(keys, i * REVISION_KEY_LENGTH, mains[p]!, subs[p]!);
        }
      });
      return { header: header(curRev), kvParts, more, count: total };
    });
  }

  /**
   * The stored KeyValues of the revisions (mains[i], subs[i]), read a chunk at a time on libuv's
   * pool (one chunk read ahead), for an answer sorted by value. The caller holds `readers`.
   */
  private async readStored(
    rev: number,
    mains: readonly number[],
    subs: readonly number[],
  ): Promise<StoredChunks> {
    const stored = new StoredChunks(mains.length, ASYNC_READ_CHUNK);
    const chunk = async (from: number) => {
      const to = Math.min(mains.length, from + ASYNC_READ_CHUNK);
      const keys: Buffer[] = [];
      for (let i = from; i < to; i++) keys.push(revisionKey(mains[i]!, subs[i]!));
      const found = await this.db.getMany(keys);
      return storedOrFail(
        found,
        (i) => ({ main: mains[from + i]!, sub: subs[from + i]! }),
        rev,
        this.compactMainRev,
      );
    };
    let next = mains.length > 0 ? chunk(0) : undefined;
    for (let from = 0; next !== undefined; from += ASYNC_READ_CHUNK) {
      const reading = next;
      // A read ahead whose answer is never awaited (this one failed) must not become an
      // unhandled rejection.
      next = from + ASYNC_READ_CHUNK < mains.length ? chunk(from + ASYNC_READ_CHUNK) : undefined;
      next?.catch(() => {});
      stored.add(await reading);
    }
    return stored;
  }

  /**
   * The stored KeyValues of `n` revisions in the order `write` gives them (writing revisions
   * from..from+count into `keys`), as RangeResponse field-2 chunks: a small answer read on
   * this thread, a larger one a chunk at a time on the read threads (answers taken in order,
   * `threads.count + 1` in flight) or libuv's pool. The caller holds `readers`.
   */
  private async readInOrder(
    handle: bigint,
    rev: number,
    n: number,
    keysOnly: boolean,
    hold: boolean,
    write: (from: number, keys: Buffer) => void,
  ): Promise<(Buffer | HeldPart)[]> {
    const keysOf = (from: number, to: number) => {
      // Its own memory: it moves to a read thread (readKeys).
      const keys = Buffer.allocUnsafeSlow((to - from) * REVISION_KEY_LENGTH);
      write(from, keys);
      return keys;
    };
    const split = (keys: Buffer) =>
      Array.from({ length: keys.length / REVISION_KEY_LENGTH }, (_, i) =>
        keys.subarray(i * REVISION_KEY_LENGTH, (i + 1) * REVISION_KEY_LENGTH),
      );
    const encodeStored = (values: readonly (Buffer | undefined)[], keys: Buffer[]) => {
      const stored = storedOrFail(
        values,
        (i) => ({ main: mainOfKey(keys[i]!), sub: subOfKey(keys[i]!) }),
        rev,
        this.compactMainRev,
      );
      return keyValueFields(2, keysOnly ? stored.map(withoutValue) : stored);
    };
    if (n === 0) return [];
    if (n <= this.syncReadMaxKeys) {
      const keys = split(keysOf(0, n));
      return [encodeStored(this.db.getManySync(keys), keys)];
    }
    // As the plain walk: a worker's start would cost a mid-sized answer more than its reads.
    const threads = n > this.rangeBatchKeys ? this.rangeThreads : undefined;
    const depth = threads === undefined ? 2 : threads.count + 1;
    const kvParts: (Buffer | HeldPart)[] = [];
    const ahead: Promise<Buffer | HeldPart>[] = [];
    try {
      for (let from = 0; from < n; from += ASYNC_READ_CHUNK) {
        const packed = keysOf(from, Math.min(n, from + ASYNC_READ_CHUNK));
        let part: Promise<Buffer | HeldPart>;
        if (threads !== undefined) {
          part = threads
            .readKeys(handle, packed, keysOnly, hold)
            .then((got) => ("held" in got ? got.held : this.threadPart(got, rev)));
        } else {
          const keys = split(packed);
          part = this.db.getMany(keys).then((values) => encodeStored(values, keys));
        }
        // A read ahead whose answer is never awaited (the Range failed first) must not become
        // an unhandled rejection; awaiting it still throws.
        part.catch(() => {});
        ahead.push(part);
        if (ahead.length >= depth) kvParts.push(await ahead.shift()!);
      }
      while (ahead.length > 0) kvParts.push(await ahead.shift()!);
      return kvParts;
    } catch (err) {
      dropHeld(kvParts, ahead);
      throw err;
    }
  }

  /**
   * rangeEncoded's walk when values are read on the threads and each KeyValue is as stored (no
   * keys_only): after the first batch (objects already), each index batch writes its revision
   * keys straight into the buffer that moves to a read thread, with no object per key (a full
   * list walks millions; objects kept alive across awaits made each young-generation GC copy
   * thousands). Answers are taken in order, with `threads.count + 1` chunks in flight, so no
   * thread waits while this one takes an answer.
   */
  private async rangeOnThreads(
    threads: RangeReadThreads,
    handle: bigint,
    bounds: KeyBounds,
    rev: number,
    limit: number,
    first: { hits: RangeHit[]; last: string | undefined; done: boolean },
    threadPart: (got: ChunkRead) => Buffer,
    hold: boolean,
  ): Promise<{ kvParts: (Buffer | HeldPart)[]; total: number }> {
    const kvParts: (Buffer | HeldPart)[] = [];
    const ahead: Promise<Buffer | HeldPart>[] = [];
    const queue = async (read: Promise<ChunkRead>) => {
      const part = read.then((got) => ("held" in got ? got.held : threadPart(got)));
      // A read ahead whose answer is never awaited (the Range failed first) must not become an
      // unhandled rejection; awaiting it still throws.
      part.catch(() => {});
      ahead.push(part);
      if (ahead.length > threads.count) kvParts.push(await ahead.shift()!);
    };
    try {
      let total = first.hits.length;
      let taken = Math.min(first.hits.length, limit);
      for (let i = 0; i < taken; i += ASYNC_READ_CHUNK) {
        await queue(
          threads.read(handle, first.hits.slice(i, Math.min(taken, i + ASYNC_READ_CHUNK)), false, hold),
        );
      }
      let last = first.last;
      let done = first.done;
      while (!done) {
        // A compaction past the read revision meanwhile took revisions the rest would show.
        if (rev < this.compactMainRev) throw new EtcdError("Compacted");
        const keys = Buffer.allocUnsafeSlow(this.rangeBatchKeys * REVISION_KEY_LENGTH);
        const batch = this.index.revisionKeysBatch(
          bounds,
          rev,
          last,
          this.rangeBatchKeys,
          keys,
          limit - taken,
        );
        total += batch.hits;
        taken += batch.written;
        last = batch.last;
        done = batch.done;
        if (batch.written > 0) {
          await queue(
            threads.readKeys(handle, keys.subarray(0, batch.written * REVISION_KEY_LENGTH), false, hold),
          );
        } else {
          await yieldToEventLoop();
        }
      }
      while (ahead.length > 0) kvParts.push(await ahead.shift()!);
      return { kvParts, total };
    } catch (err) {
      dropHeld(kvParts, ahead);
      throw err;
    }
  }

  /**
   * Large reads go to the libuv pool in chunks. Revisions are immutable, but a compaction that
   * starts meanwhile may delete superseded ones: then the read revision is compacted after all.
   */
  private async readKeyValuesAsync(hits: RangeHit[], rev: number): Promise<KeyValue[]> {
    const kvs: KeyValue[] = [];
    for (let i = 0; i < hits.length; i += ASYNC_READ_CHUNK) {
      const slice = hits.slice(i, i + ASYNC_READ_CHUNK);
      const values = await this.db.getMany(slice.map((h) => revisionKey(h.main, h.sub)));
      for (let j = 0; j < values.length; j++) {
        if (values[j] === undefined && rev < this.compactMainRev) throw new EtcdError("Compacted");
        kvs.push(decodeOrFail(values[j], slice[j]!));
      }
    }
    return kvs;
  }

  /**
   * Events from history for watchers catching up: every change in [fromRevision, toRevision]
   * to keys in range, in revision order, read from one consistent RocksDB view.
   */
  /** History reads answered from the key index (`ranges`) rather than a scan. */
  indexedHistoryReads = 0;

  async history(q: HistoryQuery): Promise<HistoryResult> {
    if (this.exclusive !== undefined) await this.passExclusive();
    this.assertUsable();
    if (q.fromRevision < this.compactMainRev) throw new EtcdError("Compacted");
    const revision = this.currentRev;
    const to = Math.min(q.toRevision ?? revision, revision);
    const from = Math.max(q.fromRevision, 1);
    if (from > to) return { events: [], nextRevision: from, revision };
    const bounds = keyBounds(q.key, q.rangeEnd ?? EMPTY);
    const limit = q.limit ?? Number.POSITIVE_INFINITY;
    if (q.ranges !== undefined) {
      const indexed = this.revisionsFromIndex(q.ranges, bounds, from, to, q.matches, limit);
      if (indexed !== undefined) {
        this.indexedHistoryReads++;
        return this.readIndexedHistory(indexed, q, from, to, limit, revision);
      }
    }
    const it = this.db.iterator({ gte: revisionKey(from, 0), lt: revisionKey(to + 1, 0) });
    const events: Event[] = [];
    let nextRevision = to + 1;
    let lastMain = 0;
    this.readers++;
    try {
      scan: for (;;) {
        const chunk = await it.next(HISTORY_CHUNK);
        for (let i = 0; i < chunk.keys.length; i++) {
          const revKey = chunk.keys[i]!;
          const main = mainOfKey(revKey);
          // Stops at a revision boundary: at the limit, or early when a defragmentation waits
          // for readers (it holds applies meanwhile, so a long scan must not hold it).
          if (
            main !== lastMain &&
            lastMain !== 0 &&
            (events.length >= limit || this.exclusive !== undefined)
          ) {
            nextRevision = main;
            break scan;
          }
          lastMain = main;
          const value = chunk.values[i]!;
          // Filtered on the key alone: most rows of a catch-up scan belong to other keys.
          const key = keyOfEncodedKeyValue(value);
          if (!keyInBounds(key, bounds) || (q.matches !== undefined && !q.matches(key))) continue;
          events.push(historyEvent(value, main, isTombstoneKey(revKey)));
        }
        if (chunk.finished) break;
      }
    } finally {
      it.close();
      this.readers--;
    }
    if (q.prevKv) this.attachPrevKvs(events);
    return { events, nextRevision, revision };
  }

  /**
   * The revisions in [from, to] of the keys in `ranges` (and in `bounds`, passing `matches`),
   * in revision order, from the key index; undefined when walking it would cost more than
   * scanning those revisions (many keys to visit, or many of the revisions theirs). Complete:
   * the index holds every revision of a key from the compaction on (etcd's keyIndex), a
   * tombstone as the last revision of an ended generation.
   */
  private revisionsFromIndex(
    ranges: readonly KeyBounds[],
    bounds: KeyBounds,
    from: number,
    to: number,
    matches: ((key: string) => boolean) | undefined,
    limit: number,
  ): IndexedRevision[] | undefined {
    const span = to - from + 1;
    // A scanned revision costs a RocksDB row and its decoding; a visited key, a few compares.
    // Every hit is collected and sorted, for each round of a catch-up (`limit` events each):
    // keys with many more revisions than a round takes are read faster by the scan, which
    // stops at the limit.
    const maxKeys = 4 * span + 1_000;
    const maxHits = Math.min(Math.floor(span / 4), 8 * limit) + 1_000;
    const hits: IndexedRevision[] = [];
    const seen = ranges.length > 1 ? new Set<string>() : undefined;
    let keys = 0;
    let tooMany = false;
    for (const range of ranges) {
      this.index.visit(range, (ki) => {
        if (++keys > maxKeys) {
          tooMany = true;
          return false;
        }
        if (ki.lastMain < from) return;
        if (seen !== undefined) {
          if (seen.has(ki.key)) return;
          seen.add(ki.key);
        }
        if (!keyInBounds(ki.key, bounds) || (matches !== undefined && !matches(ki.key))) return;
        const generations = ki.generations();
        for (let g = 0; g < generations.length; g++) {
          const revs = generations[g]!.revs;
          // A generation before the live one ended with its tombstone.
          const tombstoneAt = g < generations.length - 1 ? revs.length - 2 : -1;
          for (let r = 0; r < revs.length; r += 2) {
            const main = revs[r]!;
            if (main < from || main > to) continue;
            hits.push({ main, sub: revs[r + 1]!, tombstone: r === tombstoneAt });
          }
        }
        if (hits.length > maxHits) {
          tooMany = true;
          return false;
        }
      });
      if (tooMany) return undefined;
    }
    hits.sort((a, b) => a.main - b.main || a.sub - b.sub);
    return hits;
  }

  /** The events of `hits` (revisionsFromIndex), up to `limit` at a revision boundary. */
  private async readIndexedHistory(
    hits: IndexedRevision[],
    q: HistoryQuery,
    from: number,
    to: number,
    limit: number,
    revision: number,
  ): Promise<HistoryResult> {
    let end = hits.length;
    let nextRevision = to + 1;
    if (hits.length > limit) {
      end = Math.max(limit, 1);
      while (end < hits.length && hits[end]!.main === hits[end - 1]!.main) end++;
      if (end < hits.length) nextRevision = hits[end]!.main;
    }
    const events: Event[] = [];
    await this.reading(async () => {
      for (let i = 0; i < end; i += ASYNC_READ_CHUNK) {
        const slice = hits.slice(i, Math.min(i + ASYNC_READ_CHUNK, end));
        const values = await this.db.getMany(slice.map((h) => revisionKey(h.main, h.sub, h.tombstone)));
        for (let j = 0; j < values.length; j++) {
          const hit = slice[j]!;
          const value = values[j];
          if (value === undefined) {
            // Compacted past `from` while reading: the caller answers "compacted".
            if (from < this.compactMainRev) throw new EtcdError("Compacted");
            throw notInRocksDb(hit);
          }
          events.push(historyEvent(value, hit.main, hit.tombstone));
        }
      }
    });
    if (q.prevKv) this.attachPrevKvs(events);
    return { events, nextRevision, revision };
  }

  private attachPrevKvs(events: Event[]): void {
    const hits: RangeHit[] = [];
    const targets: Event[] = [];
    for (const event of events) {
      const before = event.kv!.modRevision - 1;
      // What the key was just before is only known while that revision is not compacted.
      if (before < this.compactMainRev) continue;
      const ki = this.index.lookup(event.kv!.key.toString("latin1"));
      const rev = ki?.get(before);
      if (ki === undefined || rev === undefined) continue;
      hits.push({ index: ki, ...rev });
      targets.push(event);
    }
    if (hits.length === 0) return;
    const kvs = this.readKeyValues(hits);
    for (let i = 0; i < kvs.length; i++) targets[i]!.prevKv = kvs[i];
  }

  // --- compaction ----------------------------------------------------------------------------

  private scheduleCompaction(rev: number): void {
    this.compactionsQueued++;
    this.compactionChain = this.compactionChain
      .then(() => this.compact(rev))
      .catch((err: unknown) => {
        this.failure ??= err instanceof Error ? err : new Error(String(err));
      })
      .finally(() => {
        this.compactionsQueued--;
      });
  }

  /** Resolves when every scheduled physical compaction has finished (etcd's `physical`). */
  async compactionDone(): Promise<void> {
    while (this.compactionsQueued > 0) await this.compactionChain;
  }

  /**
   * Physical compaction, in slices: compact the index for a slice of keys, delete the revisions
   * it dropped in one RocksDB batch, yield. Reads at or above the compacted revision never need
   * a dropped revision, so they are unaffected; a crash part-way leaves scheduled > finished and
   * open() runs it again (dropped revisions not yet deleted come back into the index from disk).
   */
  private async compact(rev: number): Promise<void> {
    let from: string | undefined = "";
    while (from !== undefined) {
      await this.passExclusive();
      if (this.closing) return;
      const removed: number[] = [];
      from = this.index.compactSlice(rev, from, this.compactionSliceKeys, removed);
      const batch = this.db.batch();
      for (let i = 0; i < removed.length; i += 3) {
        const key = revisionKey(removed[i]!, removed[i + 1]!, removed[i + 2] === 1);
        batch.del(key);
        this.sizeModel.delete(key);
        // etcd deletes CompactionBatchLimit (1,000) revisions per bolt commit: the pages each
        // commit frees are free (not in use) from the next one on. One commit per slice would
        // leave a whole slice's freed pages pending, counted in use until the next write.
        if ((i / 3 + 1) % ETCD_COMPACTION_BATCH_LIMIT === 0) {
          this.sizeModel.touch();
          this.sizeModel.commit();
        }
      }
      this.sizeModel.touch();
      this.sizeModel.commit();
      if (from === undefined) batch.put(META_FINISHED_COMPACT, revisionKey(rev, 0), this.meta);
      if (batch.length > 0) batch.write(false);
      else batch.discard();
      if (from !== undefined) await yieldToEventLoop();
    }
    this.finishedCompactRev = rev;
  }

  // --- hashes --------------------------------------------------------------------------------

  /**
   * etcd's HashKV: crc32c (Castagnoli) over "key" then every stored revision key and value up to
   * `revision`, skipping revisions at or below the compacted revision that a finished compaction
   * would drop, so members agree whatever their compaction progress.
   */
  async hashKV(revision: number): Promise<HashKVResponse> {
    if (this.exclusive !== undefined) await this.passExclusive();
    this.assertUsable();
    const compactRev = this.compactMainRev;
    const currentRev = this.currentRev;
    if (revision > 0 && revision < compactRev) throw new EtcdError("Compacted");
    if (revision > currentRev) throw new EtcdError("FutureRev");
    const rev = revision <= 0 ? currentRev : revision;
    // Both the kept set and the iterator's implicit snapshot are taken in this same tick.
    const keep = this.index.keep(rev);
    const it = this.db.iterator({ lt: revisionKey(rev + 1, 0) });
    let hash = crc32c(HASH_KEY_BUCKET);
    this.readers++;
    try {
      for (;;) {
        const chunk = await it.next(HASH_CHUNK);
        const hashed: Buffer[] = [];
        for (let i = 0; i < chunk.keys.length; i++) {
          const key = chunk.keys[i]!;
          const main = mainOfKey(key);
          if (main <= compactRev && keep.size > 0 && !keep.has(main, subOfKey(key))) continue;
          hashed.push(key, chunk.values[i]!);
        }
        // One native call per chunk: crc32c over the concatenation equals the chained crc.
        if (hashed.length > 0) hash = crc32c(Buffer.concat(hashed), hash);
        if (chunk.finished) break;
      }
    } finally {
      it.close();
      this.readers--;
    }
    return { header: header(currentRev), hash, compactRevision: compactRev, hashRevision: rev };
  }

  /**
   * etcd's Hash: the whole backend as stored (so it depends on compaction progress): the key
   * space, then the meta entries except the applied index, the term and the size model's
   * saved size, which differ by member.
   */
  async hash(): Promise<{ hash: number; revision: number }> {
    if (this.exclusive !== undefined) await this.passExclusive();
    this.assertUsable();
    const revision = this.currentRev;
    // etcd hashes every bucket by name; here: the key space, meta, then the extra families.
    const sections = [
      { name: HASH_KEY_BUCKET, it: this.db.iterator({}) },
      { name: HASH_META_BUCKET, it: this.db.iterator({ column: this.meta }) },
      ...this.extraColumns.map((name) => ({
        name: Buffer.from(name),
        it: this.db.iterator({ column: this.db.columns[name]! }),
      })),
    ];
    // The model's size depends on how this member batched its applies, as etcd's file size does.
    const memberLocal = (k: Buffer) =>
      k.equals(META_CONSISTENT_INDEX) || k.equals(META_TERM) || k.equals(META_MODEL_SIZE);
    let hash = 0;
    this.readers++;
    try {
      for (const { name, it } of sections) {
        hash = crc32c(name, hash);
        hash = await hashRows(it, hash, (k) => name !== HASH_META_BUCKET || !memberLocal(k));
      }
    } finally {
      for (const { it } of sections) it.close();
      this.readers--;
    }
    return { hash, revision };
  }

  /**
   * Every row of every column family (the revision key space as "default", then "meta" and the
   * extra columns), read from one consistent view: the iterators are all created in one tick,
   * and applies only run between ticks. For Raft snapshots and Maintenance.Snapshot.
   */
  async *exportRows(chunkRows = 1000): AsyncGenerator<{ column: string; keys: Buffer[]; values: Buffer[] }> {
    if (this.exclusive !== undefined) await this.passExclusive();
    this.assertUsable();
    const names = [META_COLUMN, ...this.extraColumns];
    const iterators = [
      { column: "default", it: this.db.iterator({}) },
      ...names.map((name) => ({ column: name, it: this.db.iterator({ column: this.db.columns[name]! }) })),
    ];
    this.readers++;
    try {
      for (const { column, it } of iterators) {
        for (;;) {
          const chunk = await it.next(chunkRows);
          if (chunk.keys.length > 0) yield { column, keys: chunk.keys, values: chunk.values };
          if (chunk.finished) break;
        }
      }
    } finally {
      for (const { it } of iterators) it.close();
      this.readers--;
    }
  }

  /**
   * One consistent view of every column family ("default" = the revision key space, "meta", and
   * the extra columns): all iterators are created now, in one tick, so a caller may read the
   * columns in any order (etcd's bucket order, for a bbolt snapshot). Close it when done.
   */
  async openView(): Promise<StoreView> {
    if (this.exclusive !== undefined) await this.passExclusive();
    this.assertUsable();
    return this.createView();
  }

  /** openView's view, made in this tick (iterators on every column, counted as a reader). */
  private createView(): StoreView {
    const names = ["default", META_COLUMN, ...this.extraColumns];
    const iterators = new Map(
      names.map((name) => [
        name,
        this.db.iterator({
          ...(name === "default" ? {} : { column: this.db.columns[name]! }),
          highWaterMarkBytes: VIEW_READ_BYTES,
          // A whole-store scan would push the hot blocks of concurrent reads out of the cache.
          fillCache: false,
        }),
      ]),
    );
    this.readers++;
    let open = true;
    return {
      async *rows(column: string, chunkRows = 1000) {
        const it = iterators.get(column);
        if (it === undefined) throw new Error(`mvcc: no column ${column} in the view`);
        for (;;) {
          const chunk = await it.next(chunkRows);
          if (chunk.keys.length > 0) yield { keys: chunk.keys, values: chunk.values };
          if (chunk.finished) return;
        }
      },
      close: () => {
        if (!open) return;
        open = false;
        for (const it of iterators.values()) it.close();
        this.readers--;
      },
    };
  }

  /**
   * openView for another thread too: `openIterators` gets the database's native handle and must
   * return only once that thread has created its iterators on every column (blocking this thread
   * meanwhile). Writes are made synchronously on this thread, so none lands between the first
   * iterator and the last: one consistent state, as openView's, which `view` (this thread's
   * openView, made in the same tick) also holds. The other thread's iterators count as a reader
   * (a defrag's switch waits for them) until `release` is called, once that thread has closed
   * them; close() calls `abort` and waits for that release first.
   */
  async shareView(
    openIterators: (handle: bigint) => void,
    abort: () => void,
  ): Promise<{ view: StoreView; release: () => void }> {
    if (this.exclusive !== undefined) await this.passExclusive();
    this.assertUsable();
    if (this.closing) throw new Error("mvcc: store closed");
    openIterators(this.db.handle);
    const view = this.createView();
    this.readers++;
    let released!: () => void;
    const done = new Promise<void>((resolve) => {
      released = resolve;
    });
    const shared = { abort, done };
    this.sharedViews.add(shared);
    let open = true;
    const release = () => {
      if (!open) return;
      open = false;
      this.readers--;
      this.sharedViews.delete(shared);
      released();
    };
    return { view, release };
  }

  // --- quota and defragmentation -------------------------------------------------------------

  /** etcd's backend Size() for the same writes (see bbolt-size-model.ts): what the quota judges. */
  get backendSize(): number {
    return this.sizeModel.size;
  }

  /** A numeric RocksDB property of the revision key space (memory accounting, benchmarks). */
  rocksProperty(name: string): number {
    return this.db.numericProperty(name);
  }

  /** etcd's backend SizeInUse() for the same writes (Status's dbSizeInUse). */
  get backendSizeInUse(): number {
    return this.sizeModel.sizeInUse;
  }

  get quota(): number {
    return this.quotaBytes;
  }

  /**
   * etcd's quota check, made before proposing: backend sizes differ between members, so it must
   * never run at apply time. When it fails the caller proposes an ACTIVATE NOSPACE alarm; once
   * applied, every member refuses writes deterministically.
   */
  quotaAvailable(request: MvccRequest | { leaseGrant: unknown }): boolean {
    let cost = 0;
    if ("put" in request) cost = putCost(request.put);
    else if ("txn" in request) cost = txnCost(request.txn);
    else if ("leaseGrant" in request) cost = 64;
    if (cost === 0) return true;
    return this.backendSize + cost < this.quotaBytes;
  }

  /**
   * etcd's defrag: rewrites the database into a fresh directory holding only live entries (etcd
   * copies its bolt file the same way), then switches to it; resolves when switched, so
   * Status's dbSize then reflects it. Writers do not wait for the copy: it reads a snapshot
   * while every batch written meanwhile is recorded, replays those batches into the copy
   * (rounds until few are left), and only the last small replay, a synced fence and the marker
   * that makes the switch durable hold applies and reads (tens of milliseconds); the old
   * database is closed and removed afterwards. Concurrent calls share one run.
   */
  defragment(): Promise<void> {
    this.defragRun ??= this.runDefragment().finally(() => {
      this.defragRun = undefined;
    });
    return this.defragRun;
  }

  private async runDefragment(): Promise<void> {
    // Not needed for correctness (a compaction's deletes are recorded and replayed like any
    // write), but etcd's `compact --physical` then defrag is expected to copy the compacted state.
    await this.compactionDone();
    // The previous defragmentation's old directory is gone before its name is reused.
    await this.cleanup;
    this.assertUsable();
    // The store lives in `location` or, after a defragmentation until the next restart or
    // close, in `location.defrag` (see database-files.ts): the copy goes to the other one.
    const source = this.db;
    const sourceDir = this.dbDir;
    const copyDir = sourceDir === this.location ? defragDirOf(this.location) : this.location;
    const columnNames = [META_COLUMN, ...this.extraColumns];
    const phases: Record<string, number> = {};
    let phaseStart = performance.now();
    const phase = (name: string) => {
      const now = performance.now();
      phases[name] = Math.round(now - phaseStart);
      phaseStart = now;
    };
    await rm(copyDir, { recursive: true, force: true });
    const copy = await RocksBackend.open(copyDir, columnNames, this.tuning);
    let recorder: WriteRecorder | undefined;
    let release: (() => void) | undefined;
    /** Set once the switch may be on disk: from then on the copy must never be removed here. */
    let marking = false;
    try {
      // etcd's defragmented layout, built from the same rows as they are copied.
      const model = new BboltSizeModel();
      model.startDefragment();
      const stopIfClosing = () => {
        if (this.closing) throw new Error("mvcc: store closed during defragmentation");
      };
      recorder = await copyOffThread(source, copy, columnNames, {
        // One tick: the worker's iterators (their implicit snapshots) and the start of the recording agree.
        atSnapshot: () => source.recordWrites(),
        onRevision: (key, valueLength) => model.addDefragmented(key, valueLength),
        stopIf: stopIfClosing,
      });
      model.finishDefragment();
      phase("copy");
      // Reads holding iterators on the old database must end before the switch: waited for
      // here without holding anything for a while (a snapshot being streamed can take long),
      // then, after the catch-up, held (which makes a long history read end early).
      const unheldUntil = performance.now() + DEFRAG_UNHELD_READERS_WAIT_MS;
      while (this.readers > 0 && performance.now() < unheldUntil) await sleep(1);
      // Catch up with what was written meanwhile, a round at a time, until a round is small
      // enough to replay while holding the store (bounded: the last round is replayed held).
      for (
        let round = 0;
        round < DEFRAG_CATCH_UP_ROUNDS && recorder.pending > DEFRAG_HELD_REPLAY_WRITES;
        round++
      ) {
        stopIfClosing();
        const batches = recorder.take();
        for (let i = 0; i < batches.length; i += DEFRAG_REPLAY_SLICE) {
          const slice = batches.slice(i, i + DEFRAG_REPLAY_SLICE);
          await untilWritesFlow(copy);
          replayWrites(slice, copy);
          replayIntoModel(slice, model);
          await yieldToEventLoop();
        }
      }
      // Nor in the held replay and fence.
      await untilWritesFlow(copy);
      phase("catch_up");
      this.exclusive = new Promise<void>((resolve) => {
        release = resolve;
      });
      while (this.readers > 0) await yieldToEventLoop();
      this.assertUsable();
      const last = recorder.take();
      source.stopRecording();
      recorder = undefined;
      replayWrites(last, copy);
      replayIntoModel(last, model);
      const fence = copy.batch();
      const meta = copy.columns[META_COLUMN];
      fence.put(META_CONSISTENT_INDEX, uint64Bytes(this.appliedIdx), meta);
      fence.put(META_TERM, uint64Bytes(this.appliedTerm), meta);
      fence.put(META_MODEL_SIZE, uint64Bytes(model.size), meta);
      // Synced: the copy's WAL, which holds every row copied (none was synced), is on disk.
      fence.write(true);
      // From here a restart opens the copy: the one durable step of the switch.
      marking = true;
      await markCopyInUse(this.location, copyDir);
      this.db = copy;
      this.dbDir = copyDir;
      this.meta = copy.columns[META_COLUMN]!;
      this.sizeModel = model;
      this.savedModelSize = model.size;
      phase("held");
      this.exclusive = undefined;
      release?.();
      release = undefined;
      // The old database is nobody's now: closed and removed while the store serves.
      this.cleanup = source
        .close()
        .catch(() => {})
        .then(() => rm(sourceDir, { recursive: true, force: true }))
        .catch(() => {});
      this.lastDefragPhasesMs = phases;
    } catch (err) {
      // A copy that failed (a full disk) only read the database in use: as etcd's defrag, drop
      // the copy, report the error and serve on. A switch that failed part-way may be on disk
      // or not: the store refuses everything until a reopen, whose recovery decides (both the
      // copy, complete and fenced, and the database in use hold every applied entry).
      // Whether or not the copy got as far as recording (stopping is idempotent).
      source.stopRecording();
      if (this.db !== copy) await copy.close().catch(() => {});
      if (!marking) await rm(copyDir, { recursive: true, force: true }).catch(() => {});
      else this.failure = err instanceof Error ? err : new Error(String(err));
      throw err;
    } finally {
      if (release !== undefined) {
        this.exclusive = undefined;
        release();
      }
    }
  }

  /**
   * Closes the database; a store living in its defragmented copy's directory is moved back to
   * `location` (what bootstrap, a snapshot install and the offline tools open).
   */
  async close(): Promise<void> {
    this.closing = true;
    // Another thread still reading would read a closed database.
    for (const view of [...this.sharedViews]) {
      view.abort();
      await view.done;
    }
    await this.defragRun?.catch(() => {});
    // Its reads in flight finish first: they read the open database on another thread.
    await this.rangeThreads?.close();
    await this.compactionChain;
    while (this.exclusive !== undefined) await this.exclusive;
    await this.applyQueue;
    // Built before the database closes (it reads the database's state); written after, into
    // the directory the database then lives in.
    let checkpoint: Buffer | undefined;
    try {
      checkpoint = this.checkpointImage();
    } catch {
      // A checkpoint is an optimisation: whatever went wrong building it, the database must
      // still close, and the next open scans.
      checkpoint = undefined;
    }
    await this.db.close();
    await this.cleanup;
    if (this.dbDir !== this.location) await recoverInterruptedDefrag(this.location);
    if (checkpoint !== undefined) await writeIndexCheckpoint(this.location, checkpoint);
    this.failure ??= new Error("mvcc: store closed");
  }

  private async reading<T>(read: () => Promise<T>): Promise<T> {
    this.readers++;
    try {
      return await read();
    } finally {
      this.readers--;
    }
  }

  private async passExclusive(): Promise<void> {
    while (this.exclusive !== undefined) await this.exclusive;
  }

  private assertUsable(): void {
    if (this.failure !== undefined) throw this.failure;
  }
}

/** How many revisions a key's history holds (tombstones included): rows of the key space. */
function revisionCount(ki: KeyIndex): number {
  let n = ki.headMain === 0 ? 0 : 1 + (ki.earlier === null ? 0 : ki.earlier.length / 2);
  if (ki.past !== null) for (const g of ki.past) n += g.revs.length / 2;
  return n;
}

/** Recorded batches of revisions, replayed into a size model as the commits they were. */
function replayIntoModel(batches: readonly RecordedWrite[][], model: BboltSizeModel): void {
  for (const batch of batches) {
    // A batch writing only the applied index (syncToDisk) is no bbolt commit in the store's count.
    let commits = false;
    for (const w of batch) {
      if (w.column === undefined) {
        if (w.value === undefined) model.delete(w.key);
        else model.put(w.key, w.value.length);
        commits = true;
      } else if (
        w.column !== META_COLUMN ||
        !(w.key.equals(META_CONSISTENT_INDEX) || w.key.equals(META_TERM))
      ) {
        commits = true;
      }
    }
    if (!commits) continue;
    model.touch();
    model.commit();
  }
}

/** Deletes each live key among `keys`, sorted, in the txn (etcd sorts a lease's keys first). */
function deleteKeys(txn: WriteTxn, index: TreeIndex, keys: Buffer[]): DeleteKeysResponse {
  const sorted = keys.map((k) => k.toString("latin1")).sort();
  let deleted = 0;
  for (const key of sorted) {
    const ki = index.lookup(key);
    if (ki?.isLive) {
      txn.delete(ki);
      deleted++;
    }
  }
  return { deleted, revision: txn.endRev };
}

/** The stored bytes of `hits`, as decodeOrFail checks them (Compacted if a compaction removed one). */
function storedOrFail(
  values: readonly (Buffer | undefined)[],
  revisionAt: (i: number) => { main: number; sub: number },
  rev: number,
  compactMainRev: number,
): Buffer[] {
  const out: Buffer[] = new Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (value === undefined) {
      if (rev < compactMainRev) throw new EtcdError("Compacted");
      throw notInRocksDb(revisionAt(i));
    }
    out[i] = value;
  }
  return out;
}

/** A history row as its event: a tombstone's kv carries the deletion's revision as modRevision. */
function historyEvent(value: Buffer, main: number, tombstone: boolean): Event {
  const kv = decodeKeyValue(value);
  if (!tombstone) return { type: EventType.PUT, kv, prevKv: undefined };
  kv.modRevision = main;
  return { type: EventType.DELETE, kv, prevKv: undefined };
}

function decodeOrFail(value: Buffer | undefined, hit: RangeHit): KeyValue {
  if (value === undefined) throw notInRocksDb(hit);
  return decodeKeyValue(value);
}

function notInRocksDb(hit: { main: number; sub: number }): Error {
  return new Error(`mvcc: revision ${hit.main}.${hit.sub} is in the index but not in RocksDB`);
}

function keyInBounds(k: string, bounds: KeyBounds): boolean {
  if (bounds.end === undefined) return k === bounds.start;
  return k >= bounds.start && (bounds.end === "" || k < bounds.end);
}

async function hashRows(
  it: ReturnType<RocksBackend["iterator"]>,
  hash: number,
  include: (key: Buffer) => boolean,
): Promise<number> {
  for (;;) {
    const chunk = await it.next(HASH_CHUNK);
    const hashed: Buffer[] = [];
    for (let i = 0; i < chunk.keys.length; i++) {
      if (include(chunk.keys[i]!)) hashed.push(chunk.keys[i]!, chunk.values[i]!);
    }
    if (hashed.length > 0) hash = crc32c(Buffer.concat(hashed), hash);
    if (chunk.finished) return hash;
  }
}

function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  end[end.length - 1]!++;
  return end;
}

function alarmId(member: AlarmMember): string {
  return `${member.memberID}/${member.alarm}`;
}

function idBytes(id: bigint): Buffer {
  const out = Buffer.allocUnsafe(8);
  out.writeBigUInt64BE(id);
  return out;
}

function encodeAlarmKey(member: AlarmMember): Buffer {
  const type = Buffer.allocUnsafe(4);
  type.writeUInt32BE(member.alarm, 0);
  return Buffer.concat([META_ALARM_PREFIX, idBytes(member.memberID), type]);
}

/** The alarm a meta row stands for, or undefined for any other meta row. */
export function alarmOfMetaKey(key: Buffer): AlarmMember | undefined {
  return key.subarray(0, META_ALARM_PREFIX.length).equals(META_ALARM_PREFIX)
    ? decodeAlarmKey(key)
    : undefined;
}

function decodeAlarmKey(key: Buffer): AlarmMember {
  const body = key.subarray(META_ALARM_PREFIX.length);
  return { memberID: body.readBigUInt64BE(0), alarm: body.readUInt32BE(8) };
}
