// grpc-go's server keepalive, as etcd configures it from --grpc-keepalive-* (embed/etcd.go):
// - KeepaliveParams{Time: interval, Timeout: timeout}: the server pings each connection every
//   `interval`, and closes one whose answer has not come `timeout` after the ping;
// - EnforcementPolicy{MinTime}: a client ping that comes less than MinTime after the previous one
//   is a strike, unless the server sent data since (grpc-go's resetPingStrikes, so BDP pings
//   that follow responses are fine); more than two strikes and the server sends GOAWAY
//   ENHANCE_YOUR_CALM with debug data "too_many_pings" and closes the connection.
// Everything here is per session (timers, the 'ping' event): nothing runs per call.
//
// Three differences, all lenient: a connection is pinged on schedule even when busy (grpc-go
// waits for `interval` without reads; a ping on a busy connection costs nothing); a ping on a
// connection with no open stream is held to MinTime (grpc-go, with PermitWithoutStream false, to
// 2 h), since counting open streams would cost on every call; and a ping up to a tenth of
// MinTime early is no strike, so a client pinging at exactly MinTime (this project's gateway
// pings its members every 5 s, etcd's default MinTime) is not cut off by timer jitter.

import http2 from "node:http2";

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
/** A PING frame: 9-byte header and 8 bytes of payload (what our ACK of a client's ping costs). */
const PING_FRAME_BYTES = 17;
const TOO_MANY_PINGS = Buffer.from("too_many_pings");
/** How early, as a fraction of MinTime, a ping may come without being a strike. */
const JITTER_ALLOWANCE = 0.1;

export function applyKeepalive(session: http2.ServerHttp2Session, policy: KeepalivePolicy): void {
  if (policy.intervalMs > 0 && policy.timeoutMs > 0) pingPeriodically(session, policy);
  if (policy.minTimeMs > 0) enforcePingPolicy(session, policy.minTimeMs);
}

function pingPeriodically(session: http2.ServerHttp2Session, policy: KeepalivePolicy): void {
  let deadline: NodeJS.Timeout | undefined;
  const interval = setInterval(() => {
    if (session.destroyed || deadline !== undefined) return;
    deadline = setTimeout(() => session.destroy(), policy.timeoutMs);
    deadline.unref();
    try {
      session.ping((err) => {
        clearTimeout(deadline);
        deadline = undefined;
        if (err) session.destroy();
      });
    } catch {
      // The session is closing: it goes away on its own.
      clearTimeout(deadline);
      deadline = undefined;
    }
  }, policy.intervalMs);
  interval.unref();
  session.once("close", () => {
    clearInterval(interval);
    clearTimeout(deadline);
  });
}

function enforcePingPolicy(session: http2.ServerHttp2Session, minTimeMs: number): void {
  let strikes = 0;
  let lastPingAt = Number.NEGATIVE_INFINITY;
  // A wrapped connection (the :authority repairing one) may not count its bytes: then every
  // ping counts as following data, i.e. never a strike.
  const bytesWritten = () => (session.socket as { bytesWritten?: number }).bytesWritten;
  let writtenAtLastPing = bytesWritten();
  session.on("ping", () => {
    const now = performance.now();
    const written = bytesWritten();
    // Beyond our ACKs (this ping's and the previous one's, depending on when each was
    // written), only HEADERS or DATA frames add up to this much: a response went out.
    const sentData =
      written === undefined ||
      writtenAtLastPing === undefined ||
      written - writtenAtLastPing > 2 * PING_FRAME_BYTES;
    const early = now - lastPingAt < minTimeMs * (1 - JITTER_ALLOWANCE);
    lastPingAt = now;
    writtenAtLastPing = written;
    if (sentData) {
      strikes = 0;
      return;
    }
    if (early) strikes++;
    if (strikes > MAX_PING_STRIKES && !session.closed) {
      // The last stream id is the newest one seen, as grpc-go's: streams in flight may finish.
      session.goaway(
        http2.constants.NGHTTP2_ENHANCE_YOUR_CALM,
        session.state.lastProcStreamID ?? 0,
        TOO_MANY_PINGS,
      );
      session.close();
    }
  });
}
