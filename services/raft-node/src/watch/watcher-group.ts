import { IntervalIndex } from "./interval-index.js";
import type { Watcher } from "./watcher.js";

/**
 * A set of watchers indexed for event matching: single-key watchers through a map, range
 * watchers through an interval tree whose nodes each hold every watcher of one identical range,
 * so thousands of watchers on the same prefix cost one node and one stab.
 */
export class WatcherGroup {
  private readonly byKey = new Map<string, Set<Watcher>>();
  private readonly byRange = new IntervalIndex<Set<Watcher>>();
  private readonly members = new Set<Watcher>();

  get size(): number {
    return this.members.size;
  }

  has(watcher: Watcher): boolean {
    return this.members.has(watcher);
  }

  [Symbol.iterator](): IterableIterator<Watcher> {
    return this.members.values();
  }

  add(watcher: Watcher): void {
    if (this.members.has(watcher)) throw new Error(`watcher ${watcher.id} added twice to a group`);
    this.members.add(watcher);
    if (watcher.end === undefined) {
      let set = this.byKey.get(watcher.key);
      if (set === undefined) {
        set = new Set();
        this.byKey.set(watcher.key, set);
      }
      set.add(watcher);
      return;
    }
    let set = this.byRange.get(watcher.key, watcher.end);
    if (set === undefined) {
      set = new Set();
      this.byRange.set(watcher.key, watcher.end, set);
    }
    set.add(watcher);
  }

  delete(watcher: Watcher): boolean {
    if (!this.members.delete(watcher)) return false;
    if (watcher.end === undefined) {
      const set = this.byKey.get(watcher.key)!;
      set.delete(watcher);
      if (set.size === 0) this.byKey.delete(watcher.key);
      return true;
    }
    const set = this.byRange.get(watcher.key, watcher.end)!;
    set.delete(watcher);
    if (set.size === 0) this.byRange.delete(watcher.key, watcher.end);
    return true;
  }

  /** Whether any watcher of the group covers `key`. */
  watches(key: string): boolean {
    return this.byKey.has(key) || this.byRange.contains(key);
  }

  /** Calls `visit` for each watcher covering `key` (each watcher at most once). */
  forEachWatching(key: string, visit: (watcher: Watcher) => void): void {
    const exact = this.byKey.get(key);
    if (exact !== undefined) for (const watcher of exact) visit(watcher);
    this.byRange.stab(key, (set) => {
      for (const watcher of set) visit(watcher);
    });
  }
}
