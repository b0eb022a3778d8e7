// grpc-go's server keepalive, as etcd configures it from --grpc-keepalive-* (embed/etcd.go):
// - KeepaliveParams{Time: interval, Timeout: timeout}: the server pings each connection every
//   `interval`, and closes one whose answer has not come `timeout` after the ping;
// - EnforcementPolicy{MinTime}: a client ping that comes less than MinTime after the previous one
//   is a strike, unless the server sent data since (grpc-go's resetPingStrikes, so BDP pings
//   that follow responses are fine); more than two strikes and the server sends GOAWAY
//   ENHANCE_YOUR_CALM with debug data "too_many_pings" and closes the connection.
// Everything here is per connection (h2/server-connection.ts's timers and PING frames): nothing
// runs per call.
//
// Three differences, all lenient: a connection is pinged on schedule even when busy (grpc-go
// waits for `interval` without reads; a ping on a busy connection costs nothing); a ping on a
// connection with no open stream is held to MinTime (grpc-go, with PermitWithoutStream false, to
// 2 h), since counting open streams would cost on every call; and a ping up to a tenth of
// MinTime early is no strike, so a client pinging at exactly MinTime (this project's gateway
// pings its members every 5 s, etcd's default MinTime) is not cut off by timer jitter.

export interface KeepalivePolicy {
  /** Client pings closer together than this are strikes; 0: no enforcement. */
  minTimeMs: number;
  /** Ping the client this often; 0: never (as etcd: interval and timeout must both be set). */
  intervalMs: number;
  /** Close a connection whose ping is not answered within this; 0: never ping. */
  timeoutMs: number;
}

/** grpc-go's maxPingStrikes: the third strike closes the connection. */
const MAX_PING_STRIKES = 2;
/** How early, as a fraction of MinTime, a ping may come without being a strike. */
const JITTER_ALLOWANCE = 0.1;
/** GOAWAY's debug data when a client pings too often (grpc-go's words). */
export const TOO_MANY_PINGS = Buffer.from("too_many_pings");

/** Counts a connection's ping strikes (the enforcement policy above). Pure: time and counts in. */
export class PingStrikes {
  private strikes = 0;
  private lastPingAt = Number.NEGATIVE_INFINITY;
  private framesAtLastPing = 0;

  constructor(private readonly minTimeMs: number) {}

  /**
   * A client PING at `now` (ms), after `framesSent` HEADERS and DATA frames in all; true: that
   * was one strike too many, send GOAWAY ENHANCE_YOUR_CALM.
   */
  ping(now: number, framesSent: number): boolean {
    const sentData = framesSent !== this.framesAtLastPing;
    const early = now - this.lastPingAt < this.minTimeMs * (1 - JITTER_ALLOWANCE);
    this.lastPingAt = now;
    this.framesAtLastPing = framesSent;
    if (sentData) {
      this.strikes = 0;
      return false;
    }
    if (early) this.strikes++;
    return this.strikes > MAX_PING_STRIKES;
  }
}
