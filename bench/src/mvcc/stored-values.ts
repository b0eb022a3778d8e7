// The keys and values the bare-store benches load: goload's keys (i big-endian in 8 bytes) and
// 256-byte values cut from random bytes, so ZSTD cannot flatter the disk or cache numbers.
import { randomBytes } from "node:crypto";

export const VALUE_BYTES = 256;
const POOL = randomBytes(1 << 20);

/** The value stored for key i: 256 bytes of the pool, at a place that depends on i. */
export function storedValue(i: number): Buffer {
  const at = (i * 7919) % (POOL.length - VALUE_BYTES);
  return POOL.subarray(at, at + VALUE_BYTES);
}

/** goload's makeKey: i big-endian in 8 bytes. */
export function keyOf(i: number): Buffer {
  const key = Buffer.alloc(8);
  key.writeBigUInt64BE(BigInt(i));
  return key;
}
