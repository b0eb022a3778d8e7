// The history of one key, as etcd's keyIndex keeps it: a list of generations, each the
// revisions from a creation up to (and including) the tombstone that ended it. The live (last)
// generation is held inline because almost every key has exactly one, which keeps a million
// keys in a few hundred bytes each. Revisions are stored flat as [main, sub, main, sub, ...].

export class Generation {
  constructor(
    /** Main revision of the put that created this generation (0 while empty). */
    public created: number,
    /** Version of the last revision in `revs`. */
    public version: number,
    public revs: number[],
  ) {}

  get isEmpty(): boolean {
    return this.revs.length === 0;
  }

  get lastMain(): number {
    return this.revs[this.revs.length - 2]!;
  }

  /** Index (in pairs) of the last revision whose main revision is <= atRev, or -1. */
  findRevisionIndex(atRev: number): number {
    let lo = 0;
    let hi = this.revs.length / 2 - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.revs[mid * 2]! <= atRev) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }
}

/** A revision of a key as seen at some store revision. */
export interface KeyRevision {
  main: number;
  sub: number;
  created: number;
  version: number;
}

export class KeyIndex {
  /** Lease attached to the live revision (0 when none or when the key is deleted). */
  lease = 0n;
  /** Generations that ended with a tombstone, oldest first. */
  past: Generation[] | null = null;
  current: Generation = new Generation(0, 0, []);

  /** The key's bytes as a latin1 string: one byte per char, so string order is byte order. */
  constructor(readonly key: string) {}

  get isEmpty(): boolean {
    return this.past === null && this.current.isEmpty;
  }

  /** Whether the key exists at the latest revision. */
  get isLive(): boolean {
    return !this.current.isEmpty;
  }

  get lastMain(): number {
    if (!this.current.isEmpty) return this.current.lastMain;
    return this.past === null ? 0 : this.past[this.past.length - 1]!.lastMain;
  }

  put(main: number, sub: number): void {
    const g = this.current;
    if (g.revs.length === 0) {
      g.created = main;
      // A literal is allocated at its exact size; push() on an empty array reserves ~17 slots,
      // which for a million single-revision keys is over 100 MB of slack.
      g.revs = [main, sub];
    } else {
      g.revs.push(main, sub);
    }
    g.version++;
  }

  /** Ends the live generation with a tombstone; false if the key is not live. */
  tombstone(main: number, sub: number): boolean {
    if (this.current.isEmpty) return false;
    this.put(main, sub);
    if (this.past === null) this.past = [this.current];
    else this.past.push(this.current);
    this.current = new Generation(0, 0, []);
    this.lease = 0n;
    return true;
  }

  /**
   * Rebuilds a key from its oldest surviving revision during restore: after compaction the
   * created revision and version can no longer be derived, so they come from the stored value.
   */
  restore(created: number, main: number, sub: number, version: number): void {
    this.current = new Generation(created, version, [main, sub]);
  }

  /** A lone surviving tombstone (its generation was compacted away) kept so compaction can remove it. */
  restoreTombstone(main: number, sub: number): void {
    this.past = [new Generation(0, 1, [main, sub])];
  }

  private generationCount(): number {
    return this.past === null ? 1 : this.past.length + 1;
  }

  private generation(i: number): Generation {
    return this.past === null || i === this.past.length ? this.current : this.past[i]!;
  }

  /** The revision visible at atRev, or undefined when the key does not exist then. */
  get(atRev: number): KeyRevision | undefined {
    const g = this.findGeneration(atRev);
    if (g === undefined) return undefined;
    const n = g.findRevisionIndex(atRev);
    if (n === -1) return undefined;
    return {
      main: g.revs[n * 2]!,
      sub: g.revs[n * 2 + 1]!,
      created: g.created,
      version: g.version - (g.revs.length / 2 - n - 1),
    };
  }

  private findGeneration(atRev: number): Generation | undefined {
    const last = this.generationCount() - 1;
    for (let i = last; i >= 0; i--) {
      const g = this.generation(i);
      if (g.isEmpty) continue;
      // A past generation whose tombstone is at or before atRev means the key was deleted then.
      if (i !== last && g.lastMain <= atRev) return undefined;
      if (g.revs[0]! <= atRev) return g;
    }
    return undefined;
  }

  /** etcd's doCompact: the generation holding atRev (or the first after it) and the kept index. */
  private locateCompaction(atRev: number): [number, number] {
    const last = this.generationCount() - 1;
    let genIdx = 0;
    let g = this.generation(0);
    while (genIdx < last) {
      if (g.lastMain >= atRev) break;
      genIdx++;
      g = this.generation(genIdx);
    }
    return [genIdx, g.findRevisionIndex(atRev)];
  }

  /**
   * Drops every revision superseded at atRev (keeping the one visible at atRev, tombstones
   * included, as etcd does) and appends the dropped ones to `removed` as [main, sub, tombstone]
   * triples so their stored values can be deleted.
   */
  compact(atRev: number, removed: number[]): void {
    const [genIdx, revIndex] = this.locateCompaction(atRev);
    for (let i = 0; i < genIdx; i++) {
      const revs = this.generation(i).revs;
      for (let r = 0; r < revs.length; r += 2)
        removed.push(revs[r]!, revs[r + 1]!, r === revs.length - 2 ? 1 : 0);
    }
    const g = this.generation(genIdx);
    if (!g.isEmpty && revIndex > 0) {
      // Only revisions before the kept one go, so a generation's closing tombstone never does.
      for (let r = 0; r < revIndex * 2; r += 2) removed.push(g.revs[r]!, g.revs[r + 1]!, 0);
      g.revs = g.revs.slice(revIndex * 2);
    }
    if (genIdx > 0 && this.past !== null) {
      this.past = this.past.slice(genIdx);
      if (this.past.length === 0) this.past = null;
    }
  }

  /**
   * etcd's keep: the revision that survives a compaction at atRev, except tombstones. HashKV
   * hashes only these among revisions at or below the compacted revision, so members that are
   * at different stages of the same compaction still agree.
   */
  keep(atRev: number, into: RevisionSet): void {
    if (this.isEmpty) return;
    const [genIdx, revIndex] = this.locateCompaction(atRev);
    if (revIndex === -1) return;
    const g = this.generation(genIdx);
    if (g.isEmpty) return;
    const isTombstone = revIndex === g.revs.length / 2 - 1 && genIdx !== this.generationCount() - 1;
    if (!isTombstone) into.add(g.revs[revIndex * 2]!, g.revs[revIndex * 2 + 1]!);
  }
}

/** A set of (main, sub) revisions packed into numbers while they fit exactly in a double. */
export class RevisionSet {
  private readonly packed = new Set<number>();
  private readonly wide = new Set<string>();

  add(main: number, sub: number): void {
    if (sub < 4096 && main < 2 ** 40) this.packed.add(main * 4096 + sub);
    else this.wide.add(`${main}_${sub}`);
  }

  has(main: number, sub: number): boolean {
    if (sub < 4096 && main < 2 ** 40) return this.packed.has(main * 4096 + sub);
    return this.wide.has(`${main}_${sub}`);
  }

  get size(): number {
    return this.packed.size + this.wide.size;
  }
}
