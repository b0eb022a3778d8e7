// A thin typed layer over @nxtedition/rocksdb. It calls the binding's batch/iterator/getMany
// primitives directly rather than abstract-level's public methods, which copy options and
// remember every batched operation in JS (a cost paid on every apply). The package ships no
// typings, so the part used here is typed locally instead of declaring the module globally.
import { createRequire } from "node:module";

/** An opaque column family handle. */
export type ColumnHandle = { readonly __column: unique symbol };

interface NativeBatch {
  _put(key: Buffer, value: Buffer, options: { column?: ColumnHandle }): void;
  _del(key: Buffer, options: { column?: ColumnHandle }): void;
  _writeSync(options: { sync?: boolean }): void;
  _clear(): void;
  _closeSync(): void;
  readonly length: number;
}

interface NativeIterator {
  _nextvSync(count: number, options?: object): { rows: (Buffer | undefined)[]; finished: boolean };
  _nextvAsync(count: number, options?: object): Promise<{ rows: (Buffer | undefined)[]; finished: boolean }>;
  _closeSync(): void;
}

interface IteratorOptions {
  column?: ColumnHandle | undefined;
  gte?: Buffer;
  lt?: Buffer;
  reverse?: boolean;
  keys?: boolean;
  values?: boolean;
  keyEncoding: "buffer";
  valueEncoding: "buffer";
  fillCache?: boolean;
  highWaterMarkBytes?: number;
}

interface NativeDb {
  open(options: object): Promise<void>;
  close(): Promise<void>;
  batch(): NativeBatch;
  _getManySync(
    keys: Buffer[],
    options: { column?: ColumnHandle | undefined; fillCache?: boolean },
  ): (Buffer | undefined | null)[];
  _getManyAsync(
    keys: Buffer[],
    options: { column?: ColumnHandle | undefined },
  ): Promise<(Buffer | undefined | null)[]>;
  _iterator(options: IteratorOptions): NativeIterator;
  getProperty(name: string): string;
  /** The native database's address, for another thread's RocksLevel (open only). */
  readonly handle: bigint;
  /** abstract-level's registry of open batches and iterators, which only its public close() leaves. */
  detachResource(resource: object): void;
  readonly columns: Record<string, ColumnHandle>;
}

const require = createRequire(import.meta.url);
const { RocksLevel } = require("@nxtedition/rocksdb") as {
  RocksLevel: new (location: string | bigint, options: object) => NativeDb;
};

export interface RowChunk {
  keys: Buffer[];
  values: Buffer[];
  finished: boolean;
}

export class RowIterator {
  constructor(
    private readonly native: NativeIterator,
    private readonly detach: (resource: object) => void,
  ) {}

  /** Up to `count` rows, read on the calling thread (cheap for cached data, blocks on disk). */
  nextSync(count: number): RowChunk {
    return toChunk(this.native._nextvSync(count));
  }

  /** Up to `count` rows, read on the libuv pool. */
  async next(count: number): Promise<RowChunk> {
    return toChunk(await this.native._nextvAsync(count));
  }

  close(): void {
    this.native._closeSync();
    // abstract-level registered the iterator in the database's resource set, which only its
    // public close() leaves: without this every read's iterator stayed reachable until the
    // database closed.
    this.detach(this.native);
  }
}

function toChunk(result: { rows: (Buffer | undefined)[]; finished: boolean }): RowChunk {
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  const rows = result.rows;
  for (let i = 0; i < rows.length; i += 2) {
    keys.push(rows[i]!);
    values.push(rows[i + 1]!);
  }
  return { keys, values, finished: result.finished };
}

/**
 * A batch is cleared and kept for the next one when it staged at most this many bytes: the
 * binding's Clear() keeps the buffer's capacity, so a kept batch costs no allocation next time,
 * and a bigger one (a compaction slice, a snapshot block) is not held for ever.
 */
const REUSE_MAX_BYTES = 1024 * 1024;
/** Batches are written one at a time on the apply path; a few cover the occasional overlap. */
const SPARE_BATCHES = 4;

/** One write of a recorded batch: `column` is the family's name (undefined: the default), `value` undefined a delete. */
export interface RecordedWrite {
  column: string | undefined;
  key: Buffer;
  value: Buffer | undefined;
}

/**
 * The batches written to a database while it records (see RocksBackend.recordWrites), in write
 * order: what an online copy replays after copying a snapshot, so writers never wait for it.
 */
export class WriteRecorder {
  private batches: RecordedWrite[][] = [];
  private writes = 0;

  /** Writes recorded and not yet taken. */
  get pending(): number {
    return this.writes;
  }

  /** The batches recorded since the last take, oldest first. */
  take(): RecordedWrite[][] {
    const out = this.batches;
    this.batches = [];
    this.writes = 0;
    return out;
  }

  /** @internal called by a batch once it is written. */
  add(batch: RecordedWrite[]): void {
    this.batches.push(batch);
    this.writes += batch.length;
  }
}

export class WriteBatch {
  private native: NativeBatch | undefined;
  private bytes = 0;
  /**
   * This batch's writes, when its database records (the key and value Buffers are held, not
   * copied: callers never reuse them; the native batch, which is reused, holds its own copy).
   */
  private readonly recorded: RecordedWrite[] | undefined;

  constructor(
    native: NativeBatch,
    private readonly release: (native: NativeBatch, bytes: number) => void,
    private readonly recorder?: WriteRecorder,
    private readonly columnName?: (column: ColumnHandle) => string,
  ) {
    this.native = native;
    this.recorded = recorder === undefined ? undefined : [];
  }

  private open(): NativeBatch {
    if (this.native === undefined) throw new Error("mvcc: write batch used after write or discard");
    return this.native;
  }

  put(key: Buffer, value: Buffer, column?: ColumnHandle): void {
    this.open()._put(key, value, column === undefined ? {} : { column });
    this.bytes += key.length + value.length;
    this.recorded?.push({ column: column === undefined ? undefined : this.columnName!(column), key, value });
  }

  del(key: Buffer, column?: ColumnHandle): void {
    this.open()._del(key, column === undefined ? {} : { column });
    this.bytes += key.length;
    this.recorded?.push({
      column: column === undefined ? undefined : this.columnName!(column),
      key,
      value: undefined,
    });
  }

  get length(): number {
    return this.open().length;
  }

  /**
   * Atomically commits the batch. Synchronous: the binding writes on the calling thread, which
   * is what lets the store update its in-memory index in the same tick as the write.
   */
  write(sync: boolean): void {
    const native = this.open();
    this.native = undefined;
    try {
      native._writeSync({ sync });
    } finally {
      this.release(native, this.bytes);
    }
    if (this.recorded !== undefined && this.recorded.length > 0) this.recorder!.add(this.recorded);
  }

  discard(): void {
    const native = this.native;
    this.native = undefined;
    if (native !== undefined) this.release(native, this.bytes);
  }
}

export interface RocksTuning {
  /** ZSTD for the revision key space: smaller on disk, slower point reads. */
  compression: boolean;
  /** Block cache for the revision key space (the binding's default is 8 MiB). */
  blockCacheBytes: number;
}

export const DEFAULT_TUNING: RocksTuning = { compression: true, blockCacheBytes: 8 * 1024 * 1024 };

/** Level compaction with a 2 MiB memtable budget: 512 KiB write buffers. */
const SIDE_COLUMN_OPTIONS = { compaction: "level", memtableMemoryBudget: 2 * 1024 * 1024 };

export class RocksBackend {
  private recorder: WriteRecorder | undefined;
  private readonly columnNames = new Map<ColumnHandle, string>();
  private readonly nameOf = (column: ColumnHandle): string => {
    const name = this.columnNames.get(column);
    if (name === undefined) throw new Error("mvcc: a column handle of another database");
    return name;
  };

  private constructor(
    private readonly db: NativeDb,
    readonly location: string,
    readonly columns: Record<string, ColumnHandle>,
  ) {
    for (const [name, handle] of Object.entries(columns)) this.columnNames.set(handle, name);
  }

  /**
   * Opens (creating if missing) a database whose default column family holds the revision
   * key space (so RocksDB's size properties describe it), plus the named extra families.
   */
  static async open(
    location: string,
    columnNames: readonly string[],
    tuning: RocksTuning = DEFAULT_TUNING,
  ): Promise<RocksBackend> {
    const db = new RocksLevel(location, { keyEncoding: "buffer", valueEncoding: "buffer" });
    const keySpace = { compression: tuning.compression, cacheSize: tuning.blockCacheBytes };
    const columns: Record<string, object> = { default: keySpace };
    // Small side families get small memtables: a RocksDB WAL file is only deleted once every
    // family with data in it has flushed, and a family written on every batch (the applied
    // index in "meta") with the default 64 MiB memtable would pin gigabytes of WAL. The binding
    // cannot set max_total_wal_size, which would bound the rest.
    for (const name of columnNames) columns[name] = SIDE_COLUMN_OPTIONS;
    // No ZSTD on RocksDB's own WAL (the binding's default): each batch write reset a streaming
    // compressor and built its tables for a record of a few hundred bytes, on the member's thread,
    // for a log deleted at the next memtable flush (perf, 1 client: ~1.4% of the leader's thread).
    // RocksDB's log reader still reads WAL files written compressed (the compression type is
    // recorded in the file), so a database from before this opens as it did.
    await db.open({ createIfMissing: true, ...keySpace, walCompression: false, columns });
    return new RocksBackend(db, location, db.columns);
  }

  /** Cleared native batches kept for reuse (see REUSE_MAX_BYTES). */
  private readonly spareBatches: NativeBatch[] = [];

  /**
   * A new write batch, written with write() in the tick it was made (every caller does): a batch
   * made before recordWrites() and written after would escape the recording. Native batches are
   * reused rather than made per batch: the binding's chained batch registers itself in
   * abstract-level's resource set, which only its public close() leaves, so each one stayed
   * reachable with its ~30 KiB of staged rows until the database closed (0.45 KB of native heap
   * per row written, 430 MiB after 1M rows, measured with glibc and jemalloc alike). A batch is
   * detached from that set when made, so the ones not kept are garbage once dropped.
   */
  batch(): WriteBatch {
    let native = this.spareBatches.pop();
    if (native === undefined) {
      native = this.db.batch();
      this.db.detachResource(native);
    }
    return this.recorder === undefined
      ? new WriteBatch(native, this.releaseBatch)
      : new WriteBatch(native, this.releaseBatch, this.recorder, this.nameOf);
  }

  /**
   * Records every batch written from now until stopRecording(). Iterators made in the same tick
   * read the state just before the first recorded batch, so a copy of them plus the recorded
   * batches, replayed in order, is the database as it is when they are replayed.
   */
  recordWrites(): WriteRecorder {
    if (this.recorder !== undefined) throw new Error("mvcc: already recording writes");
    this.recorder = new WriteRecorder();
    return this.recorder;
  }

  stopRecording(): void {
    this.recorder = undefined;
  }

  private readonly releaseBatch = (native: NativeBatch, bytes: number): void => {
    if (bytes <= REUSE_MAX_BYTES && this.spareBatches.length < SPARE_BATCHES) {
      native._clear();
      this.spareBatches.push(native);
    } else {
      native._closeSync();
    }
  };

  getManySync(keys: Buffer[], column?: ColumnHandle): (Buffer | undefined)[] {
    return normalize(this.db._getManySync(keys, { column }));
  }

  async getMany(keys: Buffer[], column?: ColumnHandle): Promise<(Buffer | undefined)[]> {
    return normalize(await this.db._getManyAsync(keys, { column }));
  }

  iterator(options: {
    column?: ColumnHandle;
    gte?: Buffer;
    lt?: Buffer;
    reverse?: boolean;
    keysOnly?: boolean;
    /** A read of many rows stops once it holds this many bytes. */
    highWaterMarkBytes?: number;
    /** false: blocks read for this scan do not evict the hot ones from the block cache. */
    fillCache?: boolean;
  }): RowIterator {
    const native = this.db._iterator({
      column: options.column,
      ...(options.gte ? { gte: options.gte } : {}),
      ...(options.lt ? { lt: options.lt } : {}),
      ...(options.highWaterMarkBytes ? { highWaterMarkBytes: options.highWaterMarkBytes } : {}),
      ...(options.fillCache === false ? { fillCache: false } : {}),
      reverse: options.reverse ?? false,
      keys: true,
      values: !options.keysOnly,
      keyEncoding: "buffer",
      valueEncoding: "buffer",
    });
    return new RowIterator(native, (resource) => this.db.detachResource(resource));
  }

  /**
   * The open database's native handle: another thread (a worker) reads the same database
   * through `attachReader(handle)`. Valid until close().
   */
  get handle(): bigint {
    return this.db.handle;
  }

  /** A RocksDB property of the default column family (the revision key space). */
  numericProperty(name: string): number {
    const value = Number(this.db.getProperty(name));
    return Number.isFinite(value) ? value : 0;
  }

  async close(): Promise<void> {
    try {
      await this.db.close();
    } catch (err) {
      // abstract-level reports any failed close as "Database is not closed"; RocksDB's reason
      // (a memtable flush that found the disk full) is only in its cause.
      const cause = (err as { cause?: unknown }).cause;
      throw cause instanceof Error
        ? new Error(`RocksDB close failed: ${cause.message}`, { cause: err })
        : err;
    }
  }
}

function normalize(values: (Buffer | undefined | null)[]): (Buffer | undefined)[] {
  for (let i = 0; i < values.length; i++) {
    // null means the read was aborted or timed out; no deadline is set, so treat it as a fault.
    if (values[i] === null) throw new Error("mvcc: RocksDB read aborted");
  }
  return values as (Buffer | undefined)[];
}

/** The database another thread opened, by its native handle (RocksBackend.handle). */
async function attachDatabase(handle: bigint): Promise<NativeDb> {
  const db = new RocksLevel(handle, { keyEncoding: "buffer", valueEncoding: "buffer" });
  // Already open: the binding returns the existing column families and opens nothing.
  await db.open({ createIfMissing: false });
  return db;
}

/**
 * Iterators on a database another thread opened (RocksBackend.handle), for a worker: the binding
 * hands out the same native database for the handle and its column families by name. The
 * database stays the opener's: nothing here closes it, and the opener must not close it before
 * every iterator made here is closed (MvccStore.shareView waits for that).
 */
export class AttachedReader {
  private constructor(private readonly db: NativeDb) {}

  static async attach(handle: bigint): Promise<AttachedReader> {
    return new AttachedReader(await attachDatabase(handle));
  }

  get columnNames(): string[] {
    return Object.keys(this.db.columns);
  }

  /**
   * fsyncs RocksDB's WAL on the calling thread: an empty batch written with sync, which RocksDB
   * appends to the WAL after every write made before it (on any thread) and syncs with them.
   */
  syncWal(): void {
    const batch = this.db.batch();
    try {
      batch._writeSync({ sync: true });
    } finally {
      batch._closeSync();
      this.db.detachResource(batch);
    }
  }

  /**
   * The stored values of `keys` in the revision key space, read on the calling thread; the
   * blocks read are not kept in the block cache (a full list must not push the hot ones out).
   */
  getManySync(keys: Buffer[]): (Buffer | undefined)[] {
    return normalize(this.db._getManySync(keys, { fillCache: false }));
  }

  /** A column's iterator ("default" is the revision key space), created now; whole unless `range`. */
  iterator(
    column: string,
    highWaterMarkBytes: number,
    range: { gte?: Buffer; lt?: Buffer } = {},
  ): RowIterator {
    const handle = column === "default" ? undefined : this.db.columns[column];
    if (column !== "default" && handle === undefined) throw new Error(`mvcc: no column ${column}`);
    const native = this.db._iterator({
      column: handle,
      highWaterMarkBytes,
      ...range,
      // A whole-store scan would push the hot blocks of the opener's reads out of the cache.
      fillCache: false,
      reverse: false,
      keys: true,
      values: true,
      keyEncoding: "buffer",
      valueEncoding: "buffer",
    });
    return new RowIterator(native, (resource) => this.db.detachResource(resource));
  }
}

/**
 * Batch writes to a database another thread opened (RocksBackend.handle), for a worker's bulk
 * copy (a defragmentation). As with AttachedReader, the database stays the opener's, which must
 * not close it while this thread writes.
 */
export class AttachedWriter {
  private constructor(private readonly db: NativeDb) {}

  static async attach(handle: bigint): Promise<AttachedWriter> {
    return new AttachedWriter(await attachDatabase(handle));
  }

  /** Writes the rows into `column` ("default" is the revision key space) as one unsynced batch, on this thread. */
  putRows(column: string, keys: readonly Buffer[], values: readonly Buffer[]): void {
    const handle = column === "default" ? undefined : this.db.columns[column];
    if (column !== "default" && handle === undefined) throw new Error(`mvcc: no column ${column}`);
    const batch = this.db.batch();
    this.db.detachResource(batch);
    try {
      const options = handle === undefined ? {} : { column: handle };
      for (let i = 0; i < keys.length; i++) batch._put(keys[i]!, values[i]!, options);
      batch._writeSync({ sync: false });
    } finally {
      batch._closeSync();
    }
  }
}
