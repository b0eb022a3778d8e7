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
