// Test fixture shared by the crash test and its child process: the entries the child
// writes are a pure function of (index, term), so the parent can check every byte.

import type { Entry } from "@etcd-ts/raft";

export function workloadEntry(index: number, term: number): Entry {
  const length = (index * 7919 + term * 31) % 700;
  const data = Buffer.allocUnsafe(length);
  for (let k = 0; k < length; k++) data[k] = (index * 13 + term * 7 + k) & 0xff;
  return { index, term, type: 0, data };
}

export function isWorkloadEntry(e: Entry): boolean {
  const expected = workloadEntry(e.index, e.term);
  return e.type === 0 && Buffer.from(e.data).equals(expected.data as Buffer);
}

/** mulberry32: small, seedable, good enough to vary batch sizes and timings. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
