import type { Entry } from "./types.js";

// Sizes count entry payload bytes only: maxSizePerMsg and maxUncommittedEntriesSize are
// budgets for application data, and the fixed per-entry framing is small and bounded.

export function entryPayloadSize(e: Entry): number {
  return e.data.length;
}

export function entriesPayloadSize(entries: readonly Entry[]): number {
  let size = 0;
  for (let i = 0; i < entries.length; i++) size += entries[i].data.length;
  return size;
}

/**
 * The longest prefix of `entries` whose payload fits in `maxSize`, but never empty when
 * `entries` is not: a single oversized entry must still make progress.
 */
export function limitSize(entries: Entry[], maxSize: number): Entry[] {
  if (entries.length === 0) return entries;
  let size = entries[0].data.length;
  let n = 1;
  for (; n < entries.length; n++) {
    size += entries[n].data.length;
    if (size > maxSize) break;
  }
  return n === entries.length ? entries : entries.slice(0, n);
}
