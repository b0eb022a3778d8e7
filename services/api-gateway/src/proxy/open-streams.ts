// Client streams that only end when the client says so (watch, keep-alive): the gateway
// ends them itself on shutdown, with UNAVAILABLE so that clients reconnect elsewhere.

import grpc from "@grpc/grpc-js";

export type EndStream = (error?: { code: number; details: string }) => void;

export class OpenStreams {
  private readonly open = new Set<EndStream>();

  add(end: EndStream): () => void {
    this.open.add(end);
    return () => this.open.delete(end);
  }

  get size(): number {
    return this.open.size;
  }

  endAll(): void {
    for (const end of [...this.open])
      end({ code: grpc.status.UNAVAILABLE, details: "etcd-ts gateway: shutting down" });
    this.open.clear();
  }
}
