import type { NodeId } from "./types.js";

/** A read waiting for a heartbeat round to confirm the leader still leads. */
export interface PendingRead {
  /** Who asked: the leader itself (answered as a ReadState) or a follower (MsgReadIndexResp). */
  from: NodeId;
  context: Uint8Array;
  /** The commit index when the read arrived: the read is served once applied reaches it. */
  index: number;
  acks: Set<NodeId>;
}

/**
 * ReadIndex requests in arrival order (etcd-io/raft's readOnly, safe mode). Each heartbeat
 * carries the context of the newest request; a quorum of acks for it confirms that
 * request and, since heartbeats are ordered by the leader's term, every older one too.
 */
export class ReadOnlyQueue {
  private readonly byKey = new Map<string, PendingRead>();
  private queue: string[] = [];

  get size(): number {
    return this.queue.length;
  }

  addRequest(index: number, from: NodeId, context: Uint8Array): void {
    const key = contextKey(context);
    if (this.byKey.has(key)) return;
    this.byKey.set(key, { from, context, index, acks: new Set() });
    this.queue.push(key);
  }

  /** Records `id`'s ack of the request with this context; the request's acks, if it is pending. */
  recvAck(id: NodeId, context: Uint8Array): Set<NodeId> | undefined {
    const rs = this.byKey.get(contextKey(context));
    if (!rs) return undefined;
    rs.acks.add(id);
    return rs.acks;
  }

  /** Removes and returns every request up to and including the one with this context. */
  advance(context: Uint8Array): PendingRead[] {
    const key = contextKey(context);
    const pos = this.queue.indexOf(key);
    if (pos < 0) return [];
    const done: PendingRead[] = [];
    for (let i = 0; i <= pos; i++) {
      const k = this.queue[i];
      const rs = this.byKey.get(k);
      if (rs) done.push(rs);
      this.byKey.delete(k);
    }
    this.queue = this.queue.slice(pos + 1);
    return done;
  }

  lastPendingContext(): Uint8Array | undefined {
    if (this.queue.length === 0) return undefined;
    return this.byKey.get(this.queue[this.queue.length - 1])?.context;
  }

  clear(): void {
    this.byKey.clear();
    this.queue = [];
  }
}

/** A Map key for a byte string; latin1 maps each byte to one UTF-16 unit, so distinct bytes stay distinct. */
function contextKey(context: Uint8Array): string {
  return Buffer.from(context.buffer, context.byteOffset, context.byteLength).toString("latin1");
}
