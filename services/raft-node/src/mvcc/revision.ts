// etcd's on-disk revision keys: 8-byte big-endian main revision, '_', 8-byte big-endian sub
// revision, and a trailing 't' for tombstones. Keeping etcd's exact bytes (and protobuf-encoded
// mvccpb.KeyValue values) makes HashKV byte-compatible with etcd's and keeps revision order equal
// to RocksDB's bytewise key order, so a scan of the key space is a scan of history.

export const REVISION_KEY_LENGTH = 17;
export const TOMBSTONE_KEY_LENGTH = 18;
const SEPARATOR = 0x5f; // '_'
const TOMBSTONE_MARK = 0x74; // 't'
const TWO_POW_32 = 4294967296;

export function revisionKey(main: number, sub: number, tombstone = false): Buffer {
  const key = Buffer.allocUnsafe(tombstone ? TOMBSTONE_KEY_LENGTH : REVISION_KEY_LENGTH);
  writeRevisionKey(key, 0, main, sub);
  if (tombstone) key[17] = TOMBSTONE_MARK;
  return key;
}

/** A (non-tombstone) revision key written into `out` at `pos` (REVISION_KEY_LENGTH bytes). */
export function writeRevisionKey(out: Buffer, pos: number, main: number, sub: number): void {
  out.writeUInt32BE(Math.floor(main / TWO_POW_32), pos);
  out.writeUInt32BE(main >>> 0, pos + 4);
  out[pos + 8] = SEPARATOR;
  out.writeUInt32BE(Math.floor(sub / TWO_POW_32), pos + 9);
  out.writeUInt32BE(sub >>> 0, pos + 13);
}

export function mainOfKey(key: Uint8Array): number {
  return readUint64(key, 0);
}

export function subOfKey(key: Uint8Array): number {
  return readUint64(key, 9);
}

export function isTombstoneKey(key: Uint8Array): boolean {
  return key.length === TOMBSTONE_KEY_LENGTH && key[17] === TOMBSTONE_MARK;
}

function readUint64(bytes: Uint8Array, offset: number): number {
  const hi =
    ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>>
    0;
  const lo =
    ((bytes[offset + 4]! << 24) |
      (bytes[offset + 5]! << 16) |
      (bytes[offset + 6]! << 8) |
      bytes[offset + 7]!) >>>
    0;
  return hi * TWO_POW_32 + lo;
}
