// Round-trip times to peers, measured over Raft's own heartbeats: etcd measures
// etcd_network_peer_round_trip_time_seconds with a prober over its HTTP pipeline; here the
// leader's MsgHeartbeat and the peer's MsgHeartbeatResp travel the same streams as every other
// Raft message, so the time between them is that path's round trip, at no extra traffic.

import { type Message, MessageType } from "@etcd-ts/raft";

export class HeartbeatClock {
  /** When the oldest heartbeat not yet answered was sent, per peer. */
  private readonly outstanding = new Map<bigint, number>();

  constructor(
    private readonly observe: (peer: bigint, seconds: number) => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  sending(messages: readonly Message[]): void {
    for (const m of messages) {
      if (m.type === MessageType.MsgHeartbeat && !this.outstanding.has(m.to))
        this.outstanding.set(m.to, this.now());
    }
  }

  receiving(messages: readonly Message[]): void {
    for (const m of messages) {
      if (m.type !== MessageType.MsgHeartbeatResp) continue;
      const sentAt = this.outstanding.get(m.from);
      if (sentAt === undefined) continue;
      this.outstanding.delete(m.from);
      this.observe(m.from, (this.now() - sentAt) / 1000);
    }
  }

  /** Heartbeats that never left: their answers will not come. */
  forget(peer: bigint): void {
    this.outstanding.delete(peer);
  }
}
