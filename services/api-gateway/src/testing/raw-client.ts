// A gRPC client for tests that speaks etcd through the generated codecs, for the calls
// etcdctl and the etcd3 client do not expose (several streams keeping one lease alive,
// tight read/write loops with per-call outcomes).

import { etcdserverpb } from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import { passThrough } from "../cluster/upstream-client.js";
import { peekResponseHeader, type ResponseHeader } from "../wire/etcd-messages.js";

export class RawEtcdClient {
  readonly client: grpc.Client;

  constructor(address: string) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure());
  }

  unary(path: string, request: Uint8Array, timeoutMs = 5_000): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        path,
        passThrough,
        passThrough,
        Buffer.from(request),
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, res) => (err ? reject(err) : resolve(res!)),
      );
    });
  }

  /** The put's response header (decoded here: real etcd's 64-bit IDs are beyond ts-proto's numbers). */
  async put(key: string, value: string): Promise<ResponseHeader> {
    const req = etcdserverpb.PutRequest.encode(
      etcdserverpb.PutRequest.fromPartial({ key: Buffer.from(key), value: Buffer.from(value) }),
    ).finish();
    const header = peekResponseHeader(await this.unary("/etcdserverpb.KV/Put", req));
    if (header === undefined) throw new Error("PutResponse without a header");
    return header;
  }

  /** The raw response, for the same reason. */
  async range(key: string, serializable = false): Promise<Buffer> {
    const req = etcdserverpb.RangeRequest.encode(
      etcdserverpb.RangeRequest.fromPartial({ key: Buffer.from(key), serializable }),
    ).finish();
    return this.unary("/etcdserverpb.KV/Range", req);
  }

  bidi(path: string): grpc.ClientDuplexStream<Buffer, Buffer> {
    return this.client.makeBidiStreamRequest(path, passThrough, passThrough, new grpc.Metadata(), {});
  }

  close(): void {
    this.client.close();
  }
}

/** Sum of a counter or gauge over members' /metrics (etcd serves them on the client port). */
export async function memberMetric(addresses: string[], name: string): Promise<number> {
  let total = 0;
  for (const address of addresses) {
    try {
      const text = await (await fetch(`http://${address}/metrics`)).text();
      const line = text.split("\n").find((l) => l.startsWith(`${name} `));
      if (line !== undefined) total += Number(line.split(" ")[1]);
    } catch {
      // A member that is down has no watchers to count.
    }
  }
  return total;
}
