// Concurrent clients doing linearizable reads, writes of unique values and compare-and-set
// txns on a few keys, each op with a deadline, recording everything; and watchers on the key
// prefix that record every event, re-watching from where they stopped after a failure.

import { Prng } from "@etcd-ts/raft";
import { status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import { type EtcdEndpoint, prefixEnd, type WireWatchResponse } from "../cluster/etcd-client.js";
import { sleep } from "./abortable-sleep.js";
import { type HistoryRecorder, now, type Operation, type Outcome, type WatcherRecord } from "./history.js";

export interface WorkloadOptions {
  endpoints: readonly EtcdEndpoint[];
  recorder: HistoryRecorder;
  seed: number;
  clients: number;
  keys: readonly string[];
  opTimeoutMs: number;
  /** Pause between a client's ops, so a 2-core machine is not saturated by the clients alone. */
  thinkMs: number;
  /** Upper bound on ops per client, whatever the duration. */
  maxOpsPerClient: number;
}

/**
 * Whether an error proves the request had no effect. Only two cases qualify: grpc-js never
 * sent it (no connection was established), or etcd rejected it as invalid before proposing.
 * Everything else (deadline, dropped connection, "leader changed", "request timed out") may
 * have been applied, or may still be.
 */
export function classifyError(err: unknown): { outcome: Outcome; error: string } {
  const e = err as Partial<ServiceError>;
  const text = `${e.code !== undefined ? (GrpcStatus[e.code] ?? e.code) : "ERROR"}: ${e.details ?? e.message ?? String(err)}`;
  if (e.code === GrpcStatus.UNAVAILABLE && /^No connection established/.test(e.details ?? "")) {
    return { outcome: "fail", error: text };
  }
  if (e.code === GrpcStatus.INVALID_ARGUMENT) return { outcome: "fail", error: text };
  return { outcome: "unknown", error: text };
}

/**
 * An error's kind for counting (the compactions' refusals): classifyError's text without what
 * varies between two errors of one kind (times, addresses, ports, numbers, grpc-js's trailing
 * details after a comma or "Last error").
 */
export function errorReason(err: unknown): string {
  return classifyError(err)
    .error.replace(/ after [\d.]+s.*$/, "")
    .replace(/,.*$/, "")
    .replace(/\. Last error: .*$/, "")
    .replace(/\d+(\.\d+)*(:\d+)?/g, "N")
    .slice(0, 80);
}

export class Workload {
  private readonly stopping = new AbortController();
  private readonly running: Promise<void>[] = [];
  private nextProcess: number;
  private valueCounter = 0;

  constructor(private readonly options: WorkloadOptions) {
    this.nextProcess = options.clients;
  }

  start(): void {
    for (let c = 0; c < this.options.clients; c++) this.running.push(this.client(c));
  }

  /** Lets in-flight ops finish (each has a deadline), then returns. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await Promise.all(this.running);
  }

  private async client(index: number): Promise<void> {
    const o = this.options;
    const rng = new Prng(o.seed * 1009 + index);
    let process = index;
    let endpoint = index % o.endpoints.length;
    // The last value this client saw per key: the "expected" of its next CAS on that key.
    const lastSeen = new Map<string, string>();
    for (let n = 0; n < o.maxOpsPerClient && !this.stopping.signal.aborted; n++) {
      const key = rng.pick(o.keys);
      const roll = rng.next();
      const expected = lastSeen.get(key);
      const kind: Operation["kind"] =
        roll < 0.5 ? "read" : roll < 0.75 || expected === undefined ? "write" : "cas";
      const value = kind === "read" ? undefined : `p${process}-${this.valueCounter++}`;
      const op = o.recorder.invoke({
        process,
        kind,
        key,
        value,
        expected: kind === "cas" ? expected : undefined,
      });
      const ep = o.endpoints[endpoint];
      try {
        if (kind === "read") {
          const r = await ep.get(key, o.opTimeoutMs);
          o.recorder.complete(op, "ok", {
            output: r.value,
            revision: r.revision,
            modRevision: r.modRevision,
          });
          if (r.value !== null) lastSeen.set(key, r.value);
        } else if (kind === "write") {
          const revision = await ep.put(key, value!, o.opTimeoutMs);
          o.recorder.complete(op, "ok", { revision });
          lastSeen.set(key, value!);
        } else {
          const r = await ep.compareAndSet(key, expected!, value!, o.opTimeoutMs);
          o.recorder.complete(op, "ok", {
            succeeded: r.succeeded,
            revision: r.revision,
            output: r.succeeded ? undefined : r.current,
            modRevision: r.modRevision,
          });
          if (r.succeeded) lastSeen.set(key, value!);
          else if (typeof r.current === "string") lastSeen.set(key, r.current);
        }
      } catch (err) {
        const { outcome, error } = classifyError(err);
        o.recorder.complete(op, outcome, { error });
        // The op may still be in flight: as in Jepsen, this logical process never completes,
        // and the client carries on as a new one.
        if (outcome === "unknown") process = this.nextProcess++;
        endpoint = (endpoint + 1) % o.endpoints.length;
        // A member that is down refuses at once; without a pause the client would spin.
        await sleep(rng.between(50, 250), this.stopping.signal);
      }
      if (o.thinkMs > 0) await sleep(rng.between(0, o.thinkMs), this.stopping.signal);
    }
  }
}

export interface WatcherOptions {
  id: number;
  endpoints: readonly EtcdEndpoint[];
  prefix: string;
  startRevision: number;
}

/**
 * Watches a prefix and records every event. After the stream fails or is canceled, it moves to
 * the next member and watches again from the revision after the last event it received.
 */
export class Watcher {
  readonly record: WatcherRecord;
  private endpoint: number;
  private stream: ReturnType<EtcdEndpoint["openWatch"]> | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly options: WatcherOptions) {
    this.record = {
      id: options.id,
      startRevision: options.startRevision,
      prefix: options.prefix,
      events: [],
      restarts: 0,
      errors: [],
    };
    this.endpoint = options.id % options.endpoints.length;
  }

  /** The revision of the last event received, 0 before any. */
  lastRevision(): number {
    return this.record.events.at(-1)?.modRevision ?? 0;
  }

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stream?.cancel();
    await this.loop;
  }

  private async run(): Promise<void> {
    let first = true;
    while (!this.stopped) {
      if (!first) {
        this.record.restarts++;
        this.endpoint = (this.endpoint + 1) % this.options.endpoints.length;
        await sleep(200);
        if (this.stopped) break;
      }
      first = false;
      const error = await this.session();
      if (error) this.record.errors.push(error);
    }
  }

  /** One watch stream; resolves with why it ended. */
  private session(): Promise<string | undefined> {
    return new Promise((resolveSession) => {
      const stream = this.options.endpoints[this.endpoint].openWatch();
      this.stream = stream;
      let ended = false;
      const finish = (why: string | undefined) => {
        if (ended) return;
        ended = true;
        stream.removeAllListeners("data");
        stream.cancel();
        resolveSession(this.stopped ? undefined : why);
      };
      const from = Math.max(this.options.startRevision, this.lastRevision() + 1);
      stream.on("data", (res: WireWatchResponse) => {
        if (res.canceled) {
          finish(
            `canceled at ${this.options.endpoints[this.endpoint].address}: ${res.cancelReason || "no reason"}`,
          );
          return;
        }
        for (const e of res.events) {
          this.record.events.push({
            key: e.kv.key.toString(),
            value: e.type === "DELETE" ? null : e.kv.value.toString(),
            modRevision: Number(e.kv.modRevision),
            receivedAt: now(),
          });
        }
      });
      stream.on("error", (err: ServiceError) =>
        finish(`${GrpcStatus[err.code] ?? err.code}: ${err.details}`),
      );
      stream.on("end", () => finish("stream ended"));
      stream.write({
        createRequest: {
          key: Buffer.from(this.options.prefix),
          rangeEnd: prefixEnd(this.options.prefix),
          startRevision: from,
        },
      });
    });
  }
}
