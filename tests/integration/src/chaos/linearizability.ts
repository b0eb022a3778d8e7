// A linearizability checker for a set of independent registers (one per key) with read, write
// and compare-and-set. Keys are checked one by one: a history of independent objects is
// linearizable iff each object's sub-history is (Herlihy & Wing's locality, "P-compositionality"
// in Horn & Kroening's terms), and small searches are exponentially cheaper than one big one.
//
// The search is Wing & Gong's, in Lowe's just-in-time form with memoisation (as Porcupine does
// it): walk the call/return entries in time order; at a call, try to linearize that op now; at a
// return whose op is not linearized yet, the current prefix is a dead end, so backtrack. A
// configuration (set of linearized ops, register state) seen before is not explored twice.
//
// Unknown ops (timeouts, lost connections) may take effect at any point after their invocation,
// with no upper bound, or never. With unique written values that freedom is resolved before the
// search rather than inside it (see prepare()): an unknown op whose value someone saw must have
// taken effect before that observer completed; one whose value nobody saw may be dropped.

import { describeOp, type Operation } from "./history.js";

export interface CheckOptions {
  /** Search steps per key (each step tries one entry) before giving up. */
  maxStepsPerKey?: number;
  /** Memoised configurations are bitsets; this bounds their total size, in 32-bit words, per search. */
  maxCacheWords?: number;
  /** Wall-clock budget per key search, in milliseconds. */
  maxMillisPerKey?: number;
  /** Shrink a violation to a small failing sub-history (costs further searches). */
  minimize?: boolean;
}

export interface KeyReport {
  key: string;
  ops: number;
  unknownOps: number;
  verdict: "ok" | "violation" | "unknown";
  /** Set when verdict is unknown: which budget ran out. */
  reason?: string;
  steps: number;
  millis: number;
  counterexample?: Counterexample;
}

export interface Counterexample {
  key: string;
  /** A sub-history that is itself not linearizable (and implies the full one is not), by invocation. */
  ops: Operation[];
  /** The ops around the point where the search got stuck, by invocation: what to read first. */
  window: Operation[];
  /** The longest prefix the search managed to linearize, in linearization order. */
  longestLinearization: Operation[];
  /** The op that could not be placed after that prefix: its return came before it could take effect. */
  stuckOn?: Operation;
  /** How many ops of the key's history the full search started from. */
  originalOps: number;
  text: string;
}

export interface LinearizabilityReport {
  verdict: "ok" | "violation" | "unknown";
  keys: KeyReport[];
  millis: number;
}

const DEFAULTS: Required<CheckOptions> = {
  maxStepsPerKey: 20_000_000,
  maxCacheWords: 32 * 1024 * 1024,
  maxMillisPerKey: 60_000,
  minimize: true,
};

export function checkLinearizability(
  history: readonly Operation[],
  options: CheckOptions = {},
): LinearizabilityReport {
  const opts = { ...DEFAULTS, ...options };
  const started = performance.now();
  const byKey = new Map<string, Operation[]>();
  for (const op of history) {
    const list = byKey.get(op.key);
    if (list) list.push(op);
    else byKey.set(op.key, [op]);
  }
  const keys: KeyReport[] = [];
  for (const [key, ops] of [...byKey].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    keys.push(checkKey(key, ops, opts));
  }
  const verdict = keys.some((k) => k.verdict === "violation")
    ? "violation"
    : keys.some((k) => k.verdict === "unknown")
      ? "unknown"
      : "ok";
  return { verdict, keys, millis: performance.now() - started };
}

export function checkKey(key: string, ops: readonly Operation[], options: CheckOptions = {}): KeyReport {
  const opts = { ...DEFAULTS, ...options };
  const started = performance.now();
  const relevant = relevantOps(ops);
  const result = search(relevant, opts, false);
  const report: KeyReport = {
    key,
    ops: relevant.length,
    unknownOps: relevant.filter((o) => o.outcome === "unknown").length,
    verdict: result.verdict,
    steps: result.steps,
    millis: 0,
  };
  if (result.verdict === "unknown") report.reason = result.reason;
  if (result.verdict === "violation") {
    const failing = opts.minimize ? minimize(relevant, opts) : relevant;
    const explained = search(failing, opts, true);
    report.counterexample = counterexample(key, failing, explained, relevant.length);
  }
  report.millis = performance.now() - started;
  return report;
}

/**
 * Drops what cannot constrain the search: failed ops never happened, and an unknown read
 * returned nothing to check.
 */
function relevantOps(ops: readonly Operation[]): Operation[] {
  return ops
    .filter((o) => o.outcome !== "fail" && !(o.outcome === "unknown" && o.kind === "read"))
    .sort((a, b) => a.invokedAt - b.invokedAt || a.id - b.id);
}

// ---- the search -------------------------------------------------------------------------

const enum Step {
  /** requires state == output */
  Read = 0,
  /** state := value */
  Write = 1,
  /** requires state == expected; state := value */
  CasApplied = 2,
  /** requires state == output && state != expected */
  CasRefused = 3,
}

const ABSENT = 0;
/**
 * Every value that no op needs to see maps to this one state: no op can tell those values
 * apart, and merging them lets the memo recognise equivalent configurations.
 */
const UNOBSERVED = 1;

interface SearchResult {
  verdict: "ok" | "violation" | "unknown";
  reason?: string;
  steps: number;
  /** Only when explaining: op indexes of the longest linearized prefix, and the op stuck on. */
  longest?: number[];
  stuckOn?: number;
}

interface Prepared {
  /** Ops the search must linearize, by invocation. */
  ops: Operation[];
  /** Per op: the time by which it must have taken effect. */
  deadline: number[];
  /** Values some linearized op needs the register to hold. */
  needed: Set<string>;
  /** Per op that changes the register: the latest invocation of an op that saw its value. */
  gate: number[];
}

/**
 * Turns unknown ops into ops the search must place, or drops them. Values are unique, so a
 * value that a completed op saw (a read's result, a refused CAS's reported value, an applied
 * CAS's expected value) was produced by exactly one op, which therefore took effect, and did so
 * before that observer completed: an unknown producer gets the observer's completion as its
 * deadline (through chains of unknown CASes, too). An unknown op whose value nothing needs is
 * dropped: its effect could only be seen by a read of that value, so "never happened" explains
 * the history whenever "happened" does. What remains has no open-ended ops, which keeps the
 * search from branching on every pending unknown op at every step.
 */
function prepare(ops: readonly Operation[]): Prepared {
  const neededBy = new Map<string, number>();
  const need = (v: string | null | undefined, by: number, work: string[]) => {
    if (typeof v !== "string") return;
    const current = neededBy.get(v);
    if (current === undefined || by < current) {
      neededBy.set(v, by);
      work.push(v);
    }
  };
  const work: string[] = [];
  const producers = new Map<string, Operation>();
  for (const o of ops) {
    if (o.kind !== "read" && o.value !== undefined) {
      if (producers.has(o.value))
        throw new Error(`value ${JSON.stringify(o.value)} is written twice; values must be unique`);
      producers.set(o.value, o);
    }
    if (o.outcome !== "ok") continue;
    if (o.kind === "read") need(o.output, o.completedAt!, work);
    else if (o.kind === "cas") {
      if (o.succeeded) need(o.expected, o.completedAt!, work);
      else need(o.output, o.completedAt!, work);
    }
  }
  while (work.length > 0) {
    const v = work.pop()!;
    const producer = producers.get(v);
    if (producer?.outcome === "unknown" && producer.kind === "cas")
      need(producer.expected, neededBy.get(v)!, work);
  }
  const kept: Operation[] = [];
  const deadline: number[] = [];
  for (const o of ops) {
    if (o.outcome === "ok") {
      if (o.completedAt === undefined || o.completedAt < o.invokedAt) {
        throw new Error(`op #${o.id} is ok but has no valid completion time`);
      }
      kept.push(o);
      deadline.push(o.completedAt);
    } else if (
      o.outcome === "unknown" &&
      o.kind !== "read" &&
      o.value !== undefined &&
      neededBy.has(o.value)
    ) {
      kept.push(o);
      deadline.push(neededBy.get(o.value)!);
    }
  }
  // The latest invocation among each value's observers: see gate in search().
  const lastObserverCall = new Map<string, number>();
  const observe = (v: string | null | undefined, at: number) => {
    if (typeof v === "string" && at > (lastObserverCall.get(v) ?? Number.NEGATIVE_INFINITY))
      lastObserverCall.set(v, at);
  };
  for (const o of kept) {
    if (o.kind === "read") observe(o.output, o.invokedAt);
    else if (o.kind === "cas" && o.outcome === "ok")
      observe(o.succeeded ? o.expected : o.output, o.invokedAt);
    else if (o.kind === "cas") observe(o.expected, o.invokedAt);
  }
  const gate = kept.map((o) =>
    o.kind === "read" || o.value === undefined
      ? Number.NEGATIVE_INFINITY
      : (lastObserverCall.get(o.value) ?? Number.NEGATIVE_INFINITY),
  );
  return { ops: kept, deadline, gate, needed: new Set(neededBy.keys()) };
}

function search(history: readonly Operation[], opts: Required<CheckOptions>, explain: boolean): SearchResult {
  const { ops, deadline, needed, gate } = prepare(history);
  const n = ops.length;
  if (n === 0) return { verdict: "ok", steps: 0 };

  const ids = new Map<string, number>();
  const idOf = (v: string | null | undefined): number => {
    if (v === null || v === undefined) return ABSENT;
    if (!needed.has(v)) return UNOBSERVED;
    const id = ids.get(v);
    if (id !== undefined) return id;
    ids.set(v, ids.size + 2);
    return ids.size + 1;
  };

  const step = new Uint8Array(n);
  const value = new Int32Array(n);
  const expected = new Int32Array(n);
  const output = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const o = ops[i];
    value[i] = idOf(o.value);
    expected[i] = idOf(o.expected);
    output[i] = idOf(o.output);
    if (o.kind === "read") step[i] = Step.Read;
    else if (o.kind === "write") step[i] = Step.Write;
    // An unknown CAS kept by prepare() is one whose value was seen: it applied.
    else step[i] = o.outcome === "unknown" || o.succeeded ? Step.CasApplied : Step.CasRefused;
  }

  // Entries: 0 is the list head; call of op i is 1 + i; return of op i is 1 + n + i.
  const events: { entry: number; time: number; isCall: boolean }[] = [];
  for (let i = 0; i < n; i++) {
    events.push({ entry: 1 + i, time: ops[i].invokedAt, isCall: true });
    events.push({ entry: 1 + n + i, time: deadline[i], isCall: false });
  }
  // Calls before returns at equal times: ops whose intervals touch count as concurrent. A
  // deadline before the op's own invocation (an unknown write read before it was issued)
  // puts its return first, which the walk treats as a dead end, as it should.
  events.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? a.entry - b.entry : a.isCall ? -1 : 1));
  const size = 1 + 2 * n;
  const next = new Int32Array(size).fill(-1);
  const prev = new Int32Array(size).fill(-1);
  let last = 0;
  for (const e of events) {
    next[last] = e.entry;
    prev[e.entry] = last;
    last = e.entry;
  }
  const isCall = (entry: number) => entry <= n;
  // A second list through the return entries of the ops that change the register (writes,
  // applied CASes), in deadline order, for the gate below. Entry 0 is its head too.
  const changes = (i: number) => step[i] !== Step.Read && step[i] !== Step.CasRefused;
  const nextChange = new Int32Array(size).fill(-1);
  const prevChange = new Int32Array(size).fill(-1);
  let lastChange = 0;
  for (const e of events) {
    if (e.isCall || !changes(e.entry - 1 - n)) continue;
    nextChange[lastChange] = e.entry;
    prevChange[e.entry] = lastChange;
    lastChange = e.entry;
  }
  const unlink = (e: number) => {
    next[prev[e]] = next[e];
    if (next[e] !== -1) prev[next[e]] = prev[e];
  };
  const relink = (e: number) => {
    if (next[e] !== -1) prev[next[e]] = e;
    next[prev[e]] = e;
  };
  const lift = (i: number) => {
    unlink(1 + i);
    unlink(1 + n + i);
    if (changes(i)) {
      const r = 1 + n + i;
      nextChange[prevChange[r]] = nextChange[r];
      if (nextChange[r] !== -1) prevChange[nextChange[r]] = prevChange[r];
    }
  };
  const unlift = (i: number) => {
    if (changes(i)) {
      const r = 1 + n + i;
      if (nextChange[r] !== -1) prevChange[nextChange[r]] = r;
      nextChange[prevChange[r]] = r;
    }
    relink(1 + n + i);
    relink(1 + i);
  };
  // Values are unique, so between a change to v and any op that saw v nothing else changes
  // the register. Hence every other change that completed before an observer of v was invoked
  // precedes the change to v. Checking that up front stops the search from trying an
  // unknown write early and only discovering, hundreds of ops later, that it was too early.
  const gateOpen = (i: number) => {
    let r = nextChange[0];
    if (r === 1 + n + i) r = nextChange[r];
    return r === -1 || deadline[r - 1 - n] >= gate[i];
  };

  // Linearized set: a bitset plus two incremental Zobrist hashes of it.
  const words = (n + 31) >>> 5;
  const bits = new Uint32Array(words);
  const zobristA = new Uint32Array(n);
  const zobristB = new Uint32Array(n);
  let seed = 0x9e3779b9;
  const rand = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  for (let i = 0; i < n; i++) {
    zobristA[i] = rand();
    zobristB[i] = rand();
  }
  let hashA = 0;
  let hashB = 0;
  const cache = new Map<number, { state: number; bits: Uint32Array }[]>();
  let cachedWords = 0;
  const cacheKey = (state: number) =>
    ((hashA ^ Math.imul(state, 0x85ebca6b)) & 0x1fffff) * 0x100000000 + (hashB >>> 0);
  // A cached configuration keeps its linearized set packed: the number of words up to the
  // highest non-zero one, then (index, word) for each of those words that is not all ones. Ops
  // are numbered in call order, so far behind the search front nearly every op is linearized;
  // what is not is the few ops of unknown outcome. Whole bitsets made each entry as large as the
  // history (3,400 words at 110,000 ops per key), and a 25-minute run exhausted the cache.
  const packBits = (): Uint32Array => {
    let top = words - 1;
    while (top >= 0 && bits[top] === 0) top--;
    let gaps = 0;
    for (let w = 0; w <= top; w++) if (bits[w] !== 0xffffffff) gaps++;
    const packed = new Uint32Array(1 + 2 * gaps);
    packed[0] = top + 1;
    let o = 1;
    for (let w = 0; w <= top; w++) {
      if (bits[w] !== 0xffffffff) {
        packed[o++] = w;
        packed[o++] = bits[w];
      }
    }
    return packed;
  };
  const samePacked = (a: Uint32Array, b: Uint32Array) => {
    if (a.length !== b.length) return false;
    for (let w = 0; w < a.length; w++) if (a[w] !== b[w]) return false;
    return true;
  };

  const stackOp: number[] = [];
  const stackState: number[] = [];
  let state = ABSENT;
  let steps = 0;
  const giveUpAt = performance.now() + opts.maxMillisPerKey;
  let longest: number[] = [];
  let stuckOn: number | undefined;

  let entry = next[0];
  for (;;) {
    if (next[0] === -1) return { verdict: "ok", steps };
    if (++steps > opts.maxStepsPerKey) {
      return { verdict: "unknown", reason: `search budget exhausted: ${opts.maxStepsPerKey} steps`, steps };
    }
    if ((steps & 0xfff) === 0 && performance.now() > giveUpAt) {
      return { verdict: "unknown", reason: `search budget exhausted: ${opts.maxMillisPerKey} ms`, steps };
    }
    if (isCall(entry)) {
      const i = entry - 1;
      let nextState = -1;
      switch (step[i]) {
        case Step.Read:
          if (state === output[i]) nextState = state;
          break;
        case Step.Write:
          if (gateOpen(i)) nextState = value[i];
          break;
        case Step.CasApplied:
          if (state === expected[i] && gateOpen(i)) nextState = value[i];
          break;
        case Step.CasRefused:
          if (state === output[i] && state !== expected[i]) nextState = state;
          break;
      }
      if (nextState !== -1) {
        const w = i >>> 5;
        const b = 1 << (i & 31);
        bits[w] |= b;
        hashA ^= zobristA[i];
        hashB ^= zobristB[i];
        const k = cacheKey(nextState);
        const bucket = cache.get(k);
        const packed = packBits();
        const seen = bucket?.some((c) => c.state === nextState && samePacked(c.bits, packed)) ?? false;
        if (!seen) {
          if (cachedWords + packed.length > opts.maxCacheWords) {
            return {
              verdict: "unknown",
              reason: `search budget exhausted: ${opts.maxCacheWords} cached words`,
              steps,
            };
          }
          const configuration = { state: nextState, bits: packed };
          if (bucket) bucket.push(configuration);
          else cache.set(k, [configuration]);
          cachedWords += packed.length;
          stackOp.push(i);
          stackState.push(state);
          state = nextState;
          lift(i);
          entry = next[0];
          continue;
        }
        bits[w] &= ~b;
        hashA ^= zobristA[i];
        hashB ^= zobristB[i];
      }
      entry = next[entry];
    } else {
      // A return entry: its op's deadline passed before it could be linearized.
      if (explain && (stuckOn === undefined || stackOp.length > longest.length)) {
        longest = stackOp.slice();
        stuckOn = entry - 1 - n;
      }
      if (stackOp.length === 0) {
        return {
          verdict: "violation",
          steps,
          longest: explain ? longest.map((i) => history.indexOf(ops[i])) : undefined,
          stuckOn: stuckOn === undefined ? undefined : history.indexOf(ops[stuckOn]),
        };
      }
      const i = stackOp.pop()!;
      state = stackState.pop()!;
      bits[i >>> 5] &= ~(1 << (i & 31));
      hashA ^= zobristA[i];
      hashB ^= zobristB[i];
      unlift(i);
      entry = next[1 + i];
    }
  }
}

// ---- shrinking a violation ----------------------------------------------------------------

/**
 * Cuts the history at time t: ops invoked later are dropped, and ops still running at t become
 * unknown (or are dropped, if they only observe). Sound: if the full history were linearizable,
 * its linearization restricted to these ops would linearize the cut one. So the earliest failing
 * cut is a genuine, shorter counterexample.
 */
function cutAt(ops: readonly Operation[], t: number): Operation[] {
  const out: Operation[] = [];
  for (const o of ops) {
    if (o.invokedAt > t) continue;
    if (o.outcome === "ok" && o.completedAt! <= t) {
      out.push(o);
    } else if (!isObservation(o)) {
      out.push({ ...o, outcome: "unknown", completedAt: undefined, output: undefined, succeeded: undefined });
    }
  }
  return out;
}

/** An op that cannot change the register; removing it from a linearizable history keeps it linearizable. */
function isObservation(o: Operation): boolean {
  return o.kind === "read" || (o.kind === "cas" && o.outcome === "ok" && !o.succeeded);
}

function fails(ops: readonly Operation[], opts: Required<CheckOptions>): boolean {
  return search(ops, opts, false).verdict === "violation";
}

function minimize(ops: readonly Operation[], opts: Required<CheckOptions>): Operation[] {
  // A failing search must exhaust its alternatives, so each costs far more than a passing one;
  // the whole shrink gets a time budget. A shrink step whose search gives up counts as "does
  // not fail", so the result is always a proven violation, just possibly a larger one.
  const giveUpAt = performance.now() + Math.min(opts.maxMillisPerKey, 20_000);
  const timeLeft = () => giveUpAt - performance.now();
  const budget = () => ({ ...opts, maxMillisPerKey: Math.max(1, Math.min(5_000, timeLeft())) });
  const completions = ops
    .filter((o) => o.outcome === "ok")
    .map((o) => o.completedAt!)
    .sort((a, b) => a - b);
  // Cutting at the last completion drops only unknown ops invoked after it, which nothing
  // observed: that cut fails exactly when the whole history does.
  let lo = 0;
  let hi = completions.length - 1;
  while (lo < hi && timeLeft() > 0) {
    const mid = (lo + hi) >>> 1;
    if (fails(cutAt(ops, completions[mid]), budget())) hi = mid;
    else lo = mid + 1;
  }
  let current = cutAt(ops, completions[hi]);

  // Then drop what the failure does not need: observations, and writes nobody observed (their
  // value can only matter to a reader). Both removals keep a linearizable history linearizable.
  const removable = (o: Operation, all: readonly Operation[]) => {
    if (isObservation(o)) return true;
    if (o.kind !== "write" || o.outcome !== "ok") return false;
    return !all.some(
      (x) => (x.kind === "read" || x.kind === "cas") && (x.output === o.value || x.expected === o.value),
    );
  };
  let checks = 0;
  let chunk = Math.max(1, current.length >>> 1);
  while (chunk >= 1 && checks < 30 && timeLeft() > 0) {
    let changed = false;
    const candidates = current.filter((o) => removable(o, current));
    for (let start = 0; start < candidates.length && checks < 30 && timeLeft() > 0; start += chunk) {
      const drop = new Set(candidates.slice(start, start + chunk));
      const smaller = current.filter((o) => !drop.has(o));
      // Removability was judged against the larger history; re-check against the smaller one.
      if (![...drop].every((o) => removable(o, smaller) || isObservation(o))) continue;
      checks++;
      if (fails(smaller, budget())) {
        current = smaller;
        changed = true;
      }
    }
    if (!changed) chunk >>>= 1;
  }
  // Unknown ops nobody saw are equivalent to ops that never happened (see prepare()).
  const kept = new Set(prepare(current).ops);
  return current.filter((o) => o.outcome !== "unknown" || kept.has(o));
}

function counterexample(
  key: string,
  ops: readonly Operation[],
  explained: SearchResult,
  originalOps: number,
): Counterexample {
  const longestLinearization = (explained.longest ?? []).map((i) => ops[i]);
  const stuckOn = explained.stuckOn === undefined ? undefined : ops[explained.stuckOn];
  const window = stuckOn ? windowAround(stuckOn, ops) : ops.slice(-20);
  const lines = [`key ${JSON.stringify(key)}: not linearizable.`];
  lines.push(
    `A failing sub-history has ${ops.length} of the key's ${originalOps} ops; around the failure (${window.length} ops):`,
  );
  for (const o of window) lines.push(`  ${describeOp(o)}`);
  if (stuckOn) {
    const tail = longestLinearization.slice(-8);
    lines.push(`The longest linearization found has ${longestLinearization.length} ops; it ends with:`);
    for (const o of tail) lines.push(`  ${describeOp(o)}`);
    lines.push("and no op order extends it past the completion (or deadline) of:");
    lines.push(`  ${describeOp(stuckOn)}`);
    if (stuckOn.outcome === "unknown") {
      lines.push(
        "  (an unknown op whose value was seen: it must have taken effect before the first op that saw it ended)",
      );
    }
  }
  return { key, ops: [...ops], window, longestLinearization, stuckOn, originalOps, text: lines.join("\n") };
}

/**
 * The ops a reader needs to see why `stuck` cannot be placed: those overlapping the span from
 * the earliest of it, the producer of the value it saw or expected, and the ops that saw its
 * own value, to the latest of their completions.
 */
function windowAround(stuck: Operation, ops: readonly Operation[]): Operation[] {
  const related = [stuck];
  const seen =
    stuck.kind === "read" || (stuck.kind === "cas" && !stuck.succeeded) ? stuck.output : stuck.expected;
  for (const o of ops) {
    if (o === stuck) continue;
    if (typeof seen === "string" && o.value === seen) related.push(o);
    if (
      stuck.value !== undefined &&
      (o.output === stuck.value || (o.kind === "cas" && o.succeeded && o.expected === stuck.value))
    ) {
      related.push(o);
    }
  }
  let from = Number.POSITIVE_INFINITY;
  let to = Number.NEGATIVE_INFINITY;
  for (const o of related) {
    from = Math.min(from, o.invokedAt);
    to = Math.max(to, o.completedAt ?? o.invokedAt);
  }
  // Unknown ops overlap everything after their invocation; only the related ones explain anything.
  return ops.filter(
    (o) => related.includes(o) || (o.outcome === "ok" && o.invokedAt <= to && o.completedAt! >= from),
  );
}
