// Builds histories by simulating a correct register: every op gets a linearization point
// inside its interval and outputs are computed in that order, so the result is linearizable
// by construction. Used to show the checker accepts large concurrent histories (and, with an
// anomaly spliced in, still finds it).

import { Prng } from "@etcd-ts/raft";
import type { Operation } from "./history.js";

export interface SyntheticOptions {
  seed: number;
  ops: number;
  processes: number;
  key?: string;
  /** Probability that an op's outcome is unknown; half of those take effect. */
  unknownRate?: number;
}

export function linearizableHistory(options: SyntheticOptions): Operation[] {
  const rng = new Prng(options.seed);
  const key = options.key ?? "k";
  const unknownRate = options.unknownRate ?? 0.05;
  const clock = new Array<number>(options.processes).fill(0);
  const processIds = clock.map((_, i) => i);
  let nextProcess = options.processes;
  const written: string[] = [];
  const ops: (Operation & { at?: number })[] = [];
  for (let id = 0; id < options.ops; id++) {
    const p = rng.between(0, options.processes - 1);
    const invokedAt = clock[p] + rng.between(0, 3);
    const duration = rng.between(1, 20);
    const completedAt = invokedAt + duration;
    clock[p] = completedAt;
    const roll = rng.next();
    const op: Operation & { at?: number } = {
      id,
      process: processIds[p],
      key,
      kind: roll < 0.5 ? "read" : roll < 0.75 ? "write" : "cas",
      invokedAt,
      completedAt,
      outcome: "ok",
      at: invokedAt + rng.next() * duration,
    };
    if (op.kind !== "read") {
      op.value = `v${id}`;
      written.push(op.value);
    }
    if (op.kind === "cas")
      op.expected =
        written.length > 1
          ? written[rng.between(Math.max(0, written.length - 4), written.length - 2)]
          : "none";
    if (op.kind !== "read" && rng.chance(unknownRate)) {
      op.outcome = "unknown";
      op.completedAt = undefined;
      // An unknown op may land long after its client gave up on it, or never.
      op.at = rng.chance(0.5) ? invokedAt + rng.next() * 200 : undefined;
      processIds[p] = nextProcess++;
    }
    ops.push(op);
  }
  let state: string | null = null;
  const applied = ops.filter((o) => o.at !== undefined).sort((a, b) => a.at! - b.at!);
  for (const op of applied) {
    if (op.kind === "read") op.output = state;
    else if (op.kind === "write") state = op.value!;
    else if (state === op.expected) {
      state = op.value!;
      if (op.outcome === "ok") op.succeeded = true;
    } else if (op.outcome === "ok") {
      op.succeeded = false;
      op.output = state;
    }
  }
  for (const op of ops) delete op.at;
  return ops;
}
