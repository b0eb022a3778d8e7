// For tests: a stream shaped as Maintenance.Snapshot's (messages of bytes ending in a sha256
// trailer), without a cluster, to drive the stores through good, corrupt and cut streams.
import { createHash } from "node:crypto";

/** `body` then `trailer` (by default its sha256), cut into `pieces` messages with remaining_bytes. */
export async function* snapshotLike(
  body: Buffer,
  trailer: Buffer = createHash("sha256").update(body).digest(),
  pieces = 7,
): AsyncGenerator<{ blob: Buffer; remaining: number }> {
  const all = Buffer.concat([body, trailer]);
  const step = Math.ceil(all.length / pieces);
  for (let at = 0; at < all.length; at += step)
    yield { blob: all.subarray(at, at + step), remaining: Math.max(0, all.length - at - step) };
}
