// The durability tests' client: puts distinct keys under one prefix from a few concurrent
// writers, remembers exactly the puts the cluster acknowledged, and later lists which of them a
// member does not serve. Every put has a deadline, every loop a bound.

import { randomBytes } from "node:crypto";
import { etcdserverpb } from "@etcd-ts/api";
import { credentials, Metadata } from "@grpc/grpc-js";

const PREFIX = "durable/";
const PREFIX_END = "durable0"; // "/" + 1

export class AckedWrites {
  /** key -> value of every put that returned OK. */
  readonly acked = new Map<string, string>();
  /** key -> the revision its acknowledged put created (each key is put once). */
  readonly revisions = new Map<string, number>();
  /** Puts that returned an error or timed out (their outcome is unknown, as for etcd's clients). */
  failed = 0;
  private next = 0;

  constructor(
    private readonly hostPorts: readonly string[],
    private readonly valueBytes = 100,
  ) {}

  /**
   * `writers` concurrent writers put until `done()` holds, or `maxMs` passed; each writer talks
   * to the endpoints in turn, moving on after an error (a client's failover).
   */
  async run(done: () => boolean, maxMs: number, writers = 4): Promise<void> {
    const deadline = Date.now() + maxMs;
    const writer = async (w: number) => {
      let at = w;
      const clients = this.hostPorts.map((hp) => new etcdserverpb.KVClient(hp, credentials.createInsecure()));
      try {
        while (!done() && Date.now() < deadline) {
          const key = `${PREFIX}${String(this.next++).padStart(8, "0")}`;
          // Random, so that compression cannot make a full disk's worth of data small.
          const value = `${key}:${randomBytes(this.valueBytes).toString("base64")}`.slice(0, this.valueBytes);
          const client = clients[at % clients.length]!;
          const revision = await new Promise<number | undefined>((resolve) =>
            client.put(
              etcdserverpb.PutRequest.fromPartial({ key: Buffer.from(key), value: Buffer.from(value) }),
              new Metadata(),
              { deadline: Date.now() + 3_000 },
              (err, res) => resolve(err === null ? Number(res?.header?.revision ?? 0) : undefined),
            ),
          );
          if (revision !== undefined) {
            this.acked.set(key, value);
            this.revisions.set(key, revision);
          } else {
            this.failed++;
            at++;
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      } finally {
        for (const c of clients) c.close();
      }
    };
    await Promise.all(Array.from({ length: writers }, (_, w) => writer(w)));
  }

  /**
   * The acknowledged puts that the member at `hostPort` does not serve with their value, read
   * from its own state (serializable), so a lagging or lost member is caught, not masked.
   */
  async missingOn(hostPort: string): Promise<string[]> {
    const client = new etcdserverpb.KVClient(hostPort, credentials.createInsecure(), {
      "grpc.max_receive_message_length": -1,
    });
    try {
      const res = await new Promise<etcdserverpb.RangeResponse>((resolve, reject) =>
        client.range(
          etcdserverpb.RangeRequest.fromPartial({
            key: Buffer.from(PREFIX),
            rangeEnd: Buffer.from(PREFIX_END),
            serializable: true,
          }),
          new Metadata(),
          { deadline: Date.now() + 10_000 },
          (err, r) => (err ? reject(err) : resolve(r!)),
        ),
      );
      const served = new Map(
        res.kvs.map((kv) => [Buffer.from(kv.key).toString(), Buffer.from(kv.value).toString()]),
      );
      return [...this.acked].filter(([k, v]) => served.get(k) !== v).map(([k]) => k);
    } finally {
      client.close();
    }
  }
}
