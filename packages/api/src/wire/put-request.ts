// etcdserverpb.PutRequest decoded without the generated codec's reader object, recursion
// bookkeeping and per-field dispatch: every put is decoded once by the member that receives it
// (to validate it) and once by every other member at apply, so this is on the hot path of each
// write. Only the plain encoding a client sends is read here (fields 1-6 with their own wire
// types, unknown length-delimited or varint fields skipped); anything else (a field with
// another wire type, a group, a tag 0, a truncated field) goes to the generated decoder, so the
// result, or the error, is always exactly what `etcdserverpb.PutRequest.decode` gives.
import { PutRequest } from "../gen/etcdserverpb/rpc.js";

export function decodePutRequest(bytes: Uint8Array): PutRequest {
  const end = bytes.length;
  let key: Buffer | undefined;
  let value: Buffer | undefined;
  let lease = 0n;
  let prevKv = false;
  let ignoreValue = false;
  let ignoreLease = false;
  let pos = 0;
  while (pos < end) {
    const tag = bytes[pos]!;
    // Every tag this reads fits one byte; a longer one is left to the generated decoder.
    if (tag >= 0x80) return PutRequest.decode(bytes);
    pos++;
    if ((tag & 7) === 2) {
      // Length-delimited: key (1), value (2), or an unknown field, skipped.
      let length = 0;
      let shift = 0;
      for (;;) {
        if (pos >= end || shift > 28) return PutRequest.decode(bytes);
        const b = bytes[pos++]!;
        length += (b & 0x7f) * 2 ** shift;
        if (b < 0x80) break;
        shift += 7;
      }
      if (pos + length > end || tag === 2) return PutRequest.decode(bytes);
      // Copies, as the generated decoder does: the request's buffer is not kept alive by its fields.
      if (tag === 10) key = Buffer.from(bytes.subarray(pos, pos + length));
      else if (tag === 18) value = Buffer.from(bytes.subarray(pos, pos + length));
      pos += length;
      continue;
    }
    if ((tag & 7) !== 0 || tag === 0 || tag > 48) return PutRequest.decode(bytes);
    // Varint: lease (3, int64), prev_kv (4), ignore_value (5), ignore_lease (6), or unknown.
    const start = pos;
    while (pos < end && bytes[pos]! >= 0x80) pos++;
    if (pos >= end || pos - start >= 10) return PutRequest.decode(bytes);
    pos++;
    if (tag === 24) {
      // A negative lease is 10 bytes whose last carries bit 63 only; wider ones are left alone.
      if (pos - start === 10 && bytes[pos - 1]! > 1) return PutRequest.decode(bytes);
      if (pos - start === 1) lease = BigInt(bytes[start]!);
      else {
        let v = 0n;
        for (let i = pos - 1; i >= start; i--) v = (v << 7n) | BigInt(bytes[i]! & 0x7f);
        lease = BigInt.asIntN(64, v);
      }
    } else if (tag === 32 || tag === 40 || tag === 48) {
      if (pos - start !== 1) return PutRequest.decode(bytes);
      const set = bytes[start] !== 0;
      if (tag === 32) prevKv = set;
      else if (tag === 40) ignoreValue = set;
      else ignoreLease = set;
    }
  }
  return {
    key: key ?? Buffer.alloc(0),
    value: value ?? Buffer.alloc(0),
    lease,
    prevKv,
    ignoreValue,
    ignoreLease,
  };
}
