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
    const { PutRequest, PutResponse } = etcdserverpb;
    const request = PutRequest.fromPartial({ key: Buffer.from(key), value: Buffer.from(value) });
    return this.call("/etcdserverpb.KV/Put", PutRequest, PutResponse, request, timeoutMs);
  }

  leaseGrant(ttl: number, timeoutMs?: number): Promise<etcdserverpb.LeaseGrantResponse> {
    const { LeaseGrantRequest, LeaseGrantResponse } = etcdserverpb;
    const request = LeaseGrantRequest.fromPartial({ TTL: BigInt(ttl) });
    return this.call(
      "/etcdserverpb.Lease/LeaseGrant",
      LeaseGrantRequest,
      LeaseGrantResponse,
      request,
      timeoutMs,
    );
  }

  status(timeoutMs?: number): Promise<etcdserverpb.StatusResponse> {
    const { StatusRequest, StatusResponse } = etcdserverpb;
    return this.call("/etcdserverpb.Maintenance/Status", StatusRequest, StatusResponse, {}, timeoutMs);
  }

  moveLeader(targetId: bigint, timeoutMs?: number): Promise<etcdserverpb.MoveLeaderResponse> {
    const { MoveLeaderRequest, MoveLeaderResponse } = etcdserverpb;
    const request = MoveLeaderRequest.fromPartial({ targetID: targetId });
    return this.call(
      "/etcdserverpb.Maintenance/MoveLeader",
      MoveLeaderRequest,
      MoveLeaderResponse,
      request,
      timeoutMs,
    );
  }

  close(): void {
    this.client.close();
  }
}
