// The history of one key, as etcd's keyIndex keeps it: a list of generations, each the
// revisions from a creation up to (and including) the tombstone that ended it. Revisions are
// stored flat as [main, sub, main, sub, ...].
//
// Almost every key of a large store has one generation of one revision, so the live generation
// is not an object of its own: its created revision, version and last revision are fields of
// the KeyIndex, and only its earlier revisions (a key written more than once) take an array.
// A key whose history is one live revision has no KeyIndex at all in the index (TreeIndex keeps
// it as a row of numbers); it gets one when a write gives it history, or as a read's view.

/** Index (in pairs) of the last revision in flat `revs` whose main revision is <= atRev, or -1. */
function findRevisionIndex(revs: readonly number[], atRev: number): number {
  let lo = 0;
  let hi = revs.length / 2 - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (revs[mid * 2]! <= atRev) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

/** A generation: past ones are kept as these; the live one is materialized by generations(). */
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
    return findRevisionIndex(this.revs, atRev);
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
  /** The live generation's created main revision (0 when the key is deleted or new). */
  created = 0;
  /** The live generation's version (its number of puts; 0 when the key is deleted or new). */
  version = 0;
  /** The live generation's last revision: main (0 when the key is not live) and sub. */
  headMain = 0;
  headSub = 0;
  /** The live generation's revisions before the head, flat; null while it has one at most. */
  earlier: number[] | null = null;

  /** The key's bytes as a latin1 string: one byte per char, so string order is byte order. */
  constructor(readonly key: string) {}

  /** A key whose history is one live revision (what TreeIndex keeps as a row). */
  static single(
    key: string,
    created: number,
    version: number,
    main: number,
    sub: number,
    lease: bigint,
  ): KeyIndex {
    const ki = new KeyIndex(key);
    ki.created = created;
    ki.version = version;
    ki.headMain = main;
    ki.headSub = sub;
    ki.lease = lease;
    return ki;
  }

  /** Whether the history is one live revision and nothing else. */
  get isSingleRevision(): boolean {
    return this.past === null && this.earlier === null && this.headMain !== 0;
  }

  get isEmpty(): boolean {
    return this.past === null && this.headMain === 0;
  }

  /** Whether the key exists at the latest revision. */
  get isLive(): boolean {
    return this.headMain !== 0;
  }

  get lastMain(): number {
    if (this.headMain !== 0) return this.headMain;
    return this.past === null ? 0 : this.past[this.past.length - 1]!.lastMain;
  }

  /** Whether (main, sub) is the key's latest revision (then the index alone describes it). */
  isHead(main: number, sub: number): boolean {
    return this.headMain === main && this.headSub === sub && main !== 0;
  }

  put(main: number, sub: number): void {
    if (this.headMain === 0) this.created = main;
    // A literal is allocated at its exact size; push() on an empty array reserves ~17 slots,
    // which for a million keys written twice is over 100 MB of slack.
    else if (this.earlier === null) this.earlier = [this.headMain, this.headSub];
    else this.earlier.push(this.headMain, this.headSub);
    this.headMain = main;
    this.headSub = sub;
    this.version++;
  }

  /** Ends the live generation with a tombstone; false if the key is not live. */
  tombstone(main: number, sub: number): boolean {
    if (this.headMain === 0) return false;
    this.put(main, sub);
    const ended = new Generation(this.created, this.version, this.liveRevisions());
    if (this.past === null) this.past = [ended];
    else this.past.push(ended);
    this.setLive(0, 0, []);
    this.lease = 0n;
    return true;
  }

  /**
   * Rebuilds a key from its oldest surviving revision during restore: after compaction the
   * created revision and version can no longer be derived, so they come from the stored value.
   */
  restore(created: number, main: number, sub: number, version: number): void {
    this.setLive(created, version, [main, sub]);
  }

  /** A lone surviving tombstone (its generation was compacted away) kept so compaction can remove it. */
  restoreTombstone(main: number, sub: number): void {
    this.past = [new Generation(0, 1, [main, sub])];
  }

  /** Every generation, oldest first, the live one (possibly empty) last: copies of the live one's fields. */
  generations(): Generation[] {
    const live = new Generation(this.created, this.version, this.headMain === 0 ? [] : this.liveRevisions());
    return this.past === null ? [live] : [...this.past, live];
  }

  /** The live generation's revisions, flat (a new array: `earlier` plus the head). */
  private liveRevisions(): number[] {
    return this.earlier === null
      ? [this.headMain, this.headSub]
      : [...this.earlier, this.headMain, this.headSub];
  }

  /** Makes `revs` (flat, possibly empty) the live generation. */
  private setLive(created: number, version: number, revs: number[]): void {
    const n = revs.length;
    this.created = created;
    this.version = version;
    this.headMain = n === 0 ? 0 : revs[n - 2]!;
    this.headSub = n === 0 ? 0 : revs[n - 1]!;
    this.earlier = n > 2 ? revs.slice(0, n - 2) : null;
  }

  /** The revision visible at atRev, or undefined when the key does not exist then. */
  get(atRev: number): KeyRevision | undefined {
    if (this.headMain !== 0) {
      const earlier = this.earlier;
      if (this.headMain <= atRev) {
        return { main: this.headMain, sub: this.headSub, created: this.created, version: this.version };
      }
      if (earlier !== null && earlier[0]! <= atRev) {
        const n = findRevisionIndex(earlier, atRev);
        // The head is one revision after earlier's last; each revision after n is one version.
        return {
          main: earlier[n * 2]!,
          sub: earlier[n * 2 + 1]!,
          created: this.created,
          version: this.version - (earlier.length / 2 - n),
        };
      }
    }
    const past = this.past;
    if (past === null) return undefined;
    for (let i = past.length - 1; i >= 0; i--) {
      const g = past[i]!;
      if (g.isEmpty) continue;
      // A past generation whose tombstone is at or before atRev means the key was deleted then.
      if (g.lastMain <= atRev) return undefined;
      if (g.revs[0]! <= atRev) {
        const n = g.findRevisionIndex(atRev);
        return {
          main: g.revs[n * 2]!,
          sub: g.revs[n * 2 + 1]!,
          created: g.created,
          version: g.version - (g.revs.length / 2 - n - 1),
        };
      }
    }
    return undefined;
  }

  /**
   * Drops every revision superseded at atRev (keeping the one visible at atRev, tombstones
   * included, as etcd does) and appends the dropped ones to `removed` as [main, sub, tombstone]
   * triples so their stored values can be deleted.
   */
  compact(atRev: number, removed: number[]): void {
    // One generation of at most one revision: nothing in it is ever superseded.
    if (this.past === null && this.earlier === null) return;
    const gens = this.generations();
    const [genIdx, revIndex] = locateCompaction(gens, atRev);
    for (let i = 0; i < genIdx; i++) {
      const revs = gens[i]!.revs;
      for (let r = 0; r < revs.length; r += 2)
        removed.push(revs[r]!, revs[r + 1]!, r === revs.length - 2 ? 1 : 0);
    }
    const g = gens[genIdx]!;
    if (!g.isEmpty && revIndex > 0) {
      // Only revisions before the kept one go, so a generation's closing tombstone never does.
      for (let r = 0; r < revIndex * 2; r += 2) removed.push(g.revs[r]!, g.revs[r + 1]!, 0);
      g.revs = g.revs.slice(revIndex * 2);
    }
    const last = gens.length - 1;
    if (genIdx === last) this.setLive(g.created, g.version, g.revs);
    if (genIdx > 0) this.past = genIdx < last ? gens.slice(genIdx, last) : null;
  }

  /**
   * etcd's keep: the revision that survives a compaction at atRev, except tombstones. HashKV
   * hashes only these among revisions at or below the compacted revision, so members that are
   * at different stages of the same compaction still agree.
   */
  keep(atRev: number, into: RevisionSet): void {
    if (this.isEmpty) return;
    if (this.past === null && this.earlier === null) {
      // One live revision: kept once it is visible at atRev (it is no tombstone).
      if (this.headMain <= atRev) into.add(this.headMain, this.headSub);
      return;
    }
    const gens = this.generations();
    const [genIdx, revIndex] = locateCompaction(gens, atRev);
    if (revIndex === -1) return;
    const g = gens[genIdx]!;
    if (g.isEmpty) return;
    const isTombstone = revIndex === g.revs.length / 2 - 1 && genIdx !== gens.length - 1;
    if (!isTombstone) into.add(g.revs[revIndex * 2]!, g.revs[revIndex * 2 + 1]!);
  }
}

/** etcd's doCompact: the generation holding atRev (or the first after it) and the kept index. */
function locateCompaction(gens: readonly Generation[], atRev: number): [number, number] {
  const last = gens.length - 1;
  let genIdx = 0;
  let g = gens[0]!;
  while (genIdx < last) {
    if (g.lastMain >= atRev) break;
    genIdx++;
    g = gens[genIdx]!;
  }
  return [genIdx, g.findRevisionIndex(atRev)];
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
