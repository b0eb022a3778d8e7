// The simulated network: pure bookkeeping of messages in flight, with no knowledge of Raft.
// Time is the simulator's step counter. A message is lost, duplicated or held back when it
// is sent; links are cut (partitions) at the moment of delivery, so a partition also eats
// messages that were already in flight when it started.

import type { NodeId } from "../types.js";
import type { Prng } from "./prng.js";

export interface Addressed {
  from: NodeId;
  to: NodeId;
}

export interface FaultRates {
  /** Probability that a message is lost at send time. */
  drop: number;
  /** Probability that a message is delivered twice (when `mayDuplicate` allows it). */
  duplicate: number;
  /** Usual delay, in steps, drawn uniformly from [0, maxDelay]. */
  maxDelay: number;
  /** Probability that a message is held back much longer than usual (reordering). */
  longDelay: number;
  /** The long delay, in steps, drawn uniformly from [maxDelay, longDelaySteps]. */
  longDelaySteps: number;
}

export const PERFECT_NETWORK: FaultRates = {
  drop: 0,
  duplicate: 0,
  maxDelay: 0,
  longDelay: 0,
  longDelaySteps: 0,
};

interface InFlight<M> {
  message: M;
  deliverAt: number;
  /** Send order, to keep the order of equal deliverAt stable before shuffling. */
  seq: number;
}

export type SendOutcome = "queued" | "dropped" | "duplicated";

export interface Delivery<M> {
  message: M;
  /** True when the link was cut at delivery time: the message never arrives. */
  lost: boolean;
}

export class SimNetwork<M extends Addressed> {
  private inFlight: InFlight<M>[] = [];
  private seq = 0;
  /** Cut directed links, as "from>to". */
  private readonly cut = new Set<string>();
  rates: FaultRates;

  constructor(
    private readonly rng: Prng,
    rates: FaultRates,
    /** Some messages must never be duplicated (see the simulator for which and why). */
    private readonly mayDuplicate: (m: M) => boolean = () => true,
  ) {
    this.rates = { ...rates };
  }

  get size(): number {
    return this.inFlight.length;
  }

  send(message: M, now: number): SendOutcome {
    const r = this.rates;
    if (r.drop > 0 && this.rng.chance(r.drop)) return "dropped";
    this.enqueue(message, now);
    if (r.duplicate > 0 && this.mayDuplicate(message) && this.rng.chance(r.duplicate)) {
      this.enqueue(message, now);
      return "duplicated";
    }
    return "queued";
  }

  private enqueue(message: M, now: number): void {
    const r = this.rates;
    let delay = r.maxDelay > 0 ? this.rng.int(r.maxDelay + 1) : 0;
    if (r.longDelay > 0 && this.rng.chance(r.longDelay)) {
      delay = this.rng.between(r.maxDelay, Math.max(r.maxDelay, r.longDelaySteps));
    }
    this.inFlight.push({ message, deliverAt: now + delay, seq: this.seq++ });
  }

  /** Every message due at `now`, in a random order, removed from the network. */
  takeDue(now: number): Delivery<M>[] {
    const due: InFlight<M>[] = [];
    const rest: InFlight<M>[] = [];
    for (const f of this.inFlight) (f.deliverAt <= now ? due : rest).push(f);
    this.inFlight = rest;
    due.sort((x, y) => x.seq - y.seq);
    this.rng.shuffle(due);
    return due.map((f) => this.deliver(f.message));
  }

  /** One message due at `now` (picked at random), or undefined when none is due. */
  takeOneDue(now: number): Delivery<M> | undefined {
    const dueIdx: number[] = [];
    for (let i = 0; i < this.inFlight.length; i++) if (this.inFlight[i].deliverAt <= now) dueIdx.push(i);
    if (dueIdx.length === 0) return undefined;
    const i = this.rng.pick(dueIdx);
    const [f] = this.inFlight.splice(i, 1);
    return this.deliver(f.message);
  }

  /** Every message in flight, due or not, in send order: the quiet phase drains the network. */
  takeAll(): Delivery<M>[] {
    const all = this.inFlight.sort((x, y) => x.seq - y.seq);
    this.inFlight = [];
    return all.map((f) => this.deliver(f.message));
  }

  private deliver(message: M): Delivery<M> {
    return { message, lost: this.cut.has(linkKey(message.from, message.to)) };
  }

  isCut(from: NodeId, to: NodeId): boolean {
    return this.cut.has(linkKey(from, to));
  }

  /** Cuts one direction only: `from` can no longer reach `to`, but `to` still reaches `from`. */
  cutOneWay(from: NodeId, to: NodeId): void {
    this.cut.add(linkKey(from, to));
  }

  /** Splits the nodes into sides that cannot talk to each other in either direction. */
  partition(sides: readonly (readonly NodeId[])[]): void {
    for (let i = 0; i < sides.length; i++) {
      for (let j = 0; j < sides.length; j++) {
        if (i === j) continue;
        for (const a of sides[i]) for (const b of sides[j]) this.cut.add(linkKey(a, b));
      }
    }
  }

  heal(): void {
    this.cut.clear();
  }

  describeCuts(): string {
    return [...this.cut].sort().join(" ");
  }
}

function linkKey(from: NodeId, to: NodeId): string {
  return `${from}>${to}`;
}
