// A checkpoint of what open() otherwise rebuilds by reading every revision: the key index and
// the size model's revisions. The store writes it when it closes and reads it at the next open
// instead of scanning RocksDB (a million revisions: ~5 s, most of it the binding making a Buffer
// per key and per value, and collecting them). This file is the image's format, pure; the store
// does the file I/O and decides whether to trust an image (see MvccStore.open).
//
// An image is trusted only when it describes the database as it is: its header records the
// database's state when it was written (applied index and term, compaction marks, the size
// model's saved size, the last revision row), all re-read from the database at open and compared;
// a CRC-32C over the whole image rejects a torn or damaged file. Anything else falls back to
// the scan, which is always correct.
import { crc32c } from "@node-rs/crc32";
import { smallInteger as small } from "./bbolt-size-model.js";
import { Generation, KeyIndex } from "./key-index.js";
import type { KeyColumns } from "./tree-index.js";

/** The database's state an image was written in; open() compares it with the database's own. */
export interface CheckpointState {
  /** Main revision of the last row of the revision key space (0 when there is none). */
  lastRow: number;
  appliedIndex: number;
  appliedTerm: number;
  finishedCompact: number;
  scheduledCompact: number;
  /** The size model's Size() as saved in the meta column. */
  modelSize: number;
}

const STATE_FIELDS: readonly (keyof CheckpointState)[] = [
  "lastRow",
  "appliedIndex",
  "appliedTerm",
  "finishedCompact",
  "scheduledCompact",
  "modelSize",
];

const MAGIC = Buffer.from("etsidx03", "latin1");
/**
 * magic, CRC-32C of everything after it, key count, revision count, history numbers, model
 * shape numbers, 4 bytes of padding, then the state fields; 8-byte aligned, as every section
 * after it, so typed arrays view them in place.
 */
const STATE_AT = MAGIC.length + 4 + 4 + 4 + 4 + 4 + 4;
const HEADER_BYTES = STATE_AT + STATE_FIELDS.length * 8;
const CRC_AT = MAGIC.length;
/** The size model's revisions: [main, sub * 2 + tombstone, value length] each. */
const MODEL_STRIDE = 3;

export function sameState(a: CheckpointState, b: CheckpointState): boolean {
  return STATE_FIELDS.every((f) => a[f] === b[f]);
}

const align8 = (n: number) => (n + 7) & ~7;

/**
 * Node's latin1 codec on a Buffer (public, untyped in @types/node): toString/write with an
 * encoding name look the codec up on every call, a cost paid per key here.
 */
interface Latin1Buffer {
  latin1Slice(start: number, end: number): string;
  latin1Write(text: string, offset: number): number;
}
const latin1 = (b: Buffer) => b as unknown as Latin1Buffer;

/** Where each section of an image starts, from its counts. Columns, so a load reads typed arrays. */
function layout(
  keyCount: number,
  revisionCount: number,
  historyNumbers: number,
  shapeNumbers: number,
  keyBytes: number,
) {
  const lease = HEADER_BYTES;
  const created = lease + keyCount * 8;
  const version = created + keyCount * 8;
  const headMain = version + keyCount * 8;
  const headSub = headMain + keyCount * 8;
  const model = headSub + keyCount * 8;
  const shape = model + revisionCount * MODEL_STRIDE * 8;
  const history = shape + shapeNumbers * 8;
  const keyEnds = history + historyNumbers * 8;
  const keys = align8(keyEnds + keyCount * 4);
  return {
    lease,
    created,
    version,
    headMain,
    headSub,
    model,
    shape,
    history,
    keyEnds,
    keys,
    end: keys + keyBytes,
  };
}

/** The per-key columns of an image, viewed in place. */
function keyColumns(image: Buffer, at: ReturnType<typeof layout>, keyCount: number) {
  const ab = image.buffer;
  const base = image.byteOffset;
  return {
    lease: new BigInt64Array(ab, base + at.lease, keyCount),
    created: new Float64Array(ab, base + at.created, keyCount),
    version: new Float64Array(ab, base + at.version, keyCount),
    headMain: new Float64Array(ab, base + at.headMain, keyCount),
    headSub: new Float64Array(ab, base + at.headSub, keyCount),
    keyEnds: new Uint32Array(ab, base + at.keyEnds, keyCount),
  };
}

/**
 * The numbers of a key whose history is more than one live revision (few keys of a large store):
 * its position, its earlier live revisions, and its past generations (created, version, revisions).
 */
function historyOf(k: number, ki: KeyIndex, out: number[]): void {
  out.push(k, ki.earlier?.length ?? 0, ...(ki.earlier ?? []), ki.past?.length ?? 0);
  for (const g of ki.past ?? []) out.push(g.created, g.version, g.revs.length, ...g.revs);
}

/** The size model as an image holds it: BboltSizeModel.shape() and leaves(). */
export interface ModelImage {
  shape: readonly number[];
  leaves: () => Iterable<readonly number[]>;
}

/**
 * An image of `keys` (the index's histories in key order, `keyCount` of them) and of the size
 * model (its shape, and its leaves' revisions in revision order).
 */
export function encodeCheckpoint(
  state: CheckpointState,
  keys: () => Iterable<KeyIndex>,
  keyCount: number,
  sizeModel: ModelImage,
): Buffer {
  const modelLeaves = sizeModel.leaves;
  let keyBytes = 0;
  const history: number[] = [];
  let k = 0;
  for (const ki of keys()) {
    keyBytes += ki.key.length;
    if (ki.earlier !== null || ki.past !== null) historyOf(k, ki, history);
    k++;
  }
  if (k !== keyCount) throw new Error(`index checkpoint: ${k} keys, expected ${keyCount}`);
  let modelNumbers = 0;
  for (const elements of modelLeaves()) modelNumbers += elements.length;
  const at = layout(keyCount, modelNumbers / MODEL_STRIDE, history.length, sizeModel.shape.length, keyBytes);
  const out = Buffer.alloc(at.end);
  const ab = out.buffer;
  const base = out.byteOffset;
  if (base % 8 !== 0) throw new Error("index checkpoint: unaligned buffer");
  let pos = MAGIC.copy(out, 0) + 4;
  pos = out.writeUInt32LE(keyCount, pos);
  pos = out.writeUInt32LE(modelNumbers / MODEL_STRIDE, pos);
  pos = out.writeUInt32LE(history.length, pos);
  pos = out.writeUInt32LE(sizeModel.shape.length, pos) + 4;
  for (const f of STATE_FIELDS) pos = out.writeDoubleLE(state[f], pos);
  const { lease, created, version, headMain, headSub, keyEnds } = keyColumns(out, at, keyCount);
  k = 0;
  let keyAt = at.keys;
  for (const ki of keys()) {
    if (ki.lease !== 0n) lease[k] = ki.lease;
    created[k] = ki.created;
    version[k] = ki.version;
    headMain[k] = ki.headMain;
    headSub[k] = ki.headSub;
    keyAt += latin1(out).latin1Write(ki.key, keyAt);
    keyEnds[k] = keyAt - at.keys;
    k++;
  }
  const model = new Float64Array(ab, base + at.model, modelNumbers);
  let m = 0;
  for (const elements of modelLeaves()) {
    model.set(elements, m);
    m += elements.length;
  }
  new Float64Array(ab, base + at.history, history.length).set(history);
  new Float64Array(ab, base + at.shape, sizeModel.shape.length).set(sizeModel.shape);
  out.writeUInt32LE(crc32c(out.subarray(CRC_AT + 4)), CRC_AT);
  return out;
}

export interface Checkpoint {
  state: CheckpointState;
  /** The key histories, in key order, as columns (views on the image) for TreeIndex.load. */
  keys: KeyColumns;
  /** The size model: BboltSizeModel.fromShape's arguments. */
  modelShape: Float64Array;
  modelElements: Float64Array;
}

/** Whether bytes [a, b) of `image` sort strictly before [b, c) (byte order, a prefix first). */
function ascending(image: Buffer, a: number, b: number, c: number): boolean {
  const common = Math.min(b - a, c - b);
  for (let j = 0; j < common; j++) {
    const d = image[a + j]! - image[b + j]!;
    if (d !== 0) return d < 0;
  }
  return b - a < c - b;
}

/** The state an image claims to describe, or a reason it is no image (cheap: no checksum yet). */
export function checkpointState(image: Buffer): CheckpointState | string {
  if (image.length < HEADER_BYTES || !image.subarray(0, MAGIC.length).equals(MAGIC))
    return "not an index checkpoint";
  const state = {} as CheckpointState;
  let pos = STATE_AT;
  for (const f of STATE_FIELDS) {
    state[f] = image.readDoubleLE(pos);
    pos += 8;
  }
  return state;
}

/** The image decoded, or why it cannot be used (damaged, torn, or not an image). */
export function decodeCheckpoint(file: Buffer): Checkpoint | string {
  const state = checkpointState(file);
  if (typeof state === "string") return state;
  if (file.readUInt32LE(CRC_AT) !== crc32c(file.subarray(CRC_AT + 4)))
    return "checksum mismatch (a torn or damaged file)";
  // Typed arrays need 8-byte aligned offsets: a large file read is, a pooled small one may not be.
  const image = file.byteOffset % 8 === 0 ? file : Buffer.from(new Uint8Array(file));
  const keyCount = image.readUInt32LE(CRC_AT + 4);
  const revisionCount = image.readUInt32LE(CRC_AT + 8);
  const historyNumbers = image.readUInt32LE(CRC_AT + 12);
  const shapeNumbers = image.readUInt32LE(CRC_AT + 16);
  const keysAt = layout(keyCount, revisionCount, historyNumbers, shapeNumbers, 0).keys;
  if (keysAt > image.length) return "truncated";
  const at = layout(keyCount, revisionCount, historyNumbers, shapeNumbers, image.length - keysAt);
  const ab = image.buffer;
  const base = image.byteOffset;
  const leaseWords = new Int32Array(ab, base + at.lease, keyCount * 2);
  const { lease, created, version, headMain, headSub, keyEnds } = keyColumns(image, at, keyCount);
  // Strictly ascending, as the index iterates them: the loaded tree then holds each once. Checked
  // on the bytes: the keys become strings a leaf at a time (TreeIndex.load), not one per key.
  let keyStart = at.keys;
  for (let k = 0; k < keyCount; k++) {
    const keyEnd = at.keys + keyEnds[k]!;
    if (keyEnd < keyStart || keyEnd > image.length) return "key offsets out of range";
    if (k > 0 && !ascending(image, at.keys + (k === 1 ? 0 : keyEnds[k - 2]!), keyStart, keyEnd))
      return "keys out of order";
    keyStart = keyEnd;
  }
  if (keyStart !== image.length) return "bytes after the keys";
  const keyText = (start: number, end: number) => latin1(image).latin1Slice(at.keys + start, at.keys + end);
  const keyOf = (k: number) => keyText(k === 0 ? 0 : keyEnds[k - 1]!, keyEnds[k]!);
  const history = new Float64Array(ab, base + at.history, historyNumbers);
  const histories = new Map<number, KeyIndex>();
  let h = 0;
  const take = (n: number): number[] => {
    if (h + n > history.length) throw new RangeError("history past its end");
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(small(history[h + i]!));
    h += n;
    return out;
  };
  try {
    while (h < history.length) {
      const [k, earlierLength] = take(2) as [number, number];
      if (!(k < keyCount) || histories.has(k)) return `history of key ${k} of ${keyCount}`;
      // Only keys with history become objects; the rest stay columns until TreeIndex.load.
      const ki = new KeyIndex(keyOf(k));
      if (leaseWords[k * 2] !== 0 || leaseWords[k * 2 + 1] !== 0) ki.lease = lease[k]!;
      ki.created = small(created[k]!);
      ki.version = small(version[k]!);
      ki.headMain = small(headMain[k]!);
      ki.headSub = small(headSub[k]!);
      if (earlierLength > 0) ki.earlier = take(earlierLength);
      const pastCount = take(1)[0]!;
      if (pastCount > 0) {
        const past: Generation[] = [];
        for (let g = 0; g < pastCount; g++) {
          const [generationCreated, generationVersion, revs] = take(3) as [number, number, number];
          past.push(new Generation(generationCreated, generationVersion, take(revs)));
        }
        ki.past = past;
      }
      histories.set(k, ki);
    }
  } catch (err) {
    // Past the end: a CRC collision on a damaged file; never trusted.
    return `malformed: ${(err as Error).message}`;
  }
  // A key without history is one live revision: a zero head would be a corrupt row.
  for (let k = 0; k < keyCount; k++)
    if (headMain[k] === 0 && !histories.has(k)) return `key ${k} has no revision`;
  // A view: the open reads it once and drops it with the image.
  const modelElements = new Float64Array(ab, base + at.model, revisionCount * MODEL_STRIDE);
  const modelShape = new Float64Array(ab, base + at.shape, shapeNumbers);
  return {
    state,
    keys: { keyText, keyEnds, created, version, headMain, headSub, lease, leaseWords, histories },
    modelShape,
    modelElements,
  };
}
