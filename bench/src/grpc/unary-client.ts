// The benchmarks' minimal etcd client: raw unary gRPC calls with the generated codecs, so that
// no client library's own work sits between a benchmark and what it measures.
import { etcdserverpb } from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";

interface Encoder<T> {
  encode(message: T): { finish(): Uint8Array };
}
interface Decoder<T> {
  decode(bytes: Uint8Array): T;
}

export class UnaryClient {
  private readonly client: grpc.Client;

  /** `address`: host:port, plain text. */
  constructor(readonly address: string) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure());
  }

  /** One call of `path` (/etcdserverpb.KV/Put), failing after `timeoutMs`. */
  call<Q, R>(
    path: string,
    request: Encoder<Q>,
    response: Decoder<R>,
    message: Q,
    timeoutMs = 10_000,
  ): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.client.makeUnaryRequest(
        path,
        (q: Q) => Buffer.from(request.encode(q).finish()),
        (b: Buffer) => response.decode(b),
        message,
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, value) => (err ? reject(err) : resolve(value!)),
      );
    });
  }

  put(key: string, value: string, timeoutMs?: number): Promise<etcdserverpb.PutResponse> {
    return this.call(
      "/etcdserverpb.KV/Put",
      etcdserverpb.PutRequest,
      etcdserverpb.PutResponse,
      etcdserverpb.PutRequest.fromPartial({ key: Buffer.from(key), value: Buffer.from(value) }),
      timeoutMs,
    );
  }

  leaseGrant(ttl: number, timeoutMs?: number): Promise<etcdserverpb.LeaseGrantResponse> {
    return this.call(
      "/etcdserverpb.Lease/LeaseGrant",
      etcdserverpb.LeaseGrantRequest,
      etcdserverpb.LeaseGrantResponse,
      etcdserverpb.LeaseGrantRequest.fromPartial({ TTL: BigInt(ttl) }),
      timeoutMs,
    );
  }

  status(timeoutMs?: number): Promise<etcdserverpb.StatusResponse> {
    return this.call(
      "/etcdserverpb.Maintenance/Status",
      etcdserverpb.StatusRequest,
      etcdserverpb.StatusResponse,
      etcdserverpb.StatusRequest.fromPartial({}),
      timeoutMs,
    );
  }

  moveLeader(targetId: bigint, timeoutMs?: number): Promise<etcdserverpb.MoveLeaderResponse> {
    return this.call(
      "/etcdserverpb.Maintenance/MoveLeader",
      etcdserverpb.MoveLeaderRequest,
      etcdserverpb.MoveLeaderResponse,
      etcdserverpb.MoveLeaderRequest.fromPartial({ targetID: targetId }),
      timeoutMs,
    );
  }

  close(): void {
    this.client.close();
  }
}
