// How a lease is stored: etcd's layout (bucket "lease", key = the ID as 8 big-endian bytes,
// value = leasepb.Lease{ID=1, TTL=2, RemainingTTL=3} in protobuf), here in the "lease" column
// family that mvcc opens next to its own and writes in the same batch as the raft apply.
import type { LeaseId, LeaseRecord } from "./lessor.js";

export const LEASE_COLUMN = "lease";

export function leaseKey(id: LeaseId): Buffer {
  const key = Buffer.allocUnsafe(8);
  // Two's complement, as etcd's int64 key: a client may pick a negative ID.
  key.writeBigInt64BE(id);
  return key;
}

export function leaseIdOfKey(key: Buffer): LeaseId {
  if (key.length !== 8) throw new Error(`lease: malformed key of ${key.length} bytes`);
  return key.readBigInt64BE();
}

function writeVarint(out: number[], value: bigint): void {
  // int64 varints: negative values take ten bytes of their two's complement.
  let big = BigInt.asUintN(64, value);
  while (big >= 0x80n) {
    out.push(Number(big & 0x7fn) | 0x80);
    big >>= 7n;
  }
  out.push(Number(big));
}

export function encodeLeaseRecord(record: LeaseRecord): Buffer {
  const out: number[] = [];
  const field = (tag: number, value: bigint) => {
    if (value === 0n) return;
    out.push(tag);
    writeVarint(out, value);
  };
  field(0x08, record.id);
  field(0x10, BigInt(record.ttl));
  field(0x18, BigInt(record.remainingTtl));
  return Buffer.from(out);
}

export function decodeLeaseRecord(bytes: Buffer): LeaseRecord {
  const record: LeaseRecord = { id: 0n, ttl: 0, remainingTtl: 0 };
  let offset = 0;
  while (offset < bytes.length) {
    const tag = bytes[offset++];
    let value = 0n;
    let shift = 0n;
    for (;;) {
      if (offset >= bytes.length) throw new Error("lease: truncated record");
      const byte = bytes[offset++];
      value |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) break;
      shift += 7n;
    }
    const int64 = BigInt.asIntN(64, value);
    if (tag === 0x08) record.id = int64;
    else if (tag === 0x10) record.ttl = Number(int64);
    else if (tag === 0x18) record.remainingTtl = Number(int64);
    // Unknown varint fields (a newer version's) are skipped; other wire types cannot be.
    else if ((tag & 7) !== 0) throw new Error(`lease: unsupported field tag ${tag}`);
  }
  return record;
}
