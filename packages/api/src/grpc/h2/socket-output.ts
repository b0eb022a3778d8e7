// An HTTP/2 connection's frames out to its socket, for either side (server-connection.ts, and the
// peer transport's client connections): everything queued during one event-loop turn leaves in
// one socket write (joined up to JOIN_MAX_BYTES, corked above), and while the socket is full
// the core holds its DATA (`outputHeld`) until the socket drains; control frames still go.

import type { Duplex } from "node:stream";

/** Up to this many bytes of one turn's frames are joined into one write; above, written as they are. */
const JOIN_MAX_BYTES = 256 * 1024;

/** The longest `pushLater`'s bytes wait for another write before they go alone. */
const LATER_MAX_MS = 5;

/** What the output needs of a protocol core (H2ServerConnection, H2ClientConnection). */
export interface FramingCore {
  /** Frames what streams have queued; the frames come back through `push` at once. */
  flush(): void;
  /** Set while the socket is full: DATA waits, control frames still go. */
  outputHeld: boolean;
}

/**
 * Stamps of socket I/O for latency profiling (a member's ETCD_TS_TRACE_EVENTS): unset, each
 * call site costs one property read.
 */
export const socketTaps: {
  write?: (socket: Duplex, bytes: number) => void;
  data?: (socket: Duplex, bytes: number) => void;
} = {};

export class SocketOutput {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private scheduled = false;
  /** `pushLater`'s bytes, and the timer that sends them alone if no other write comes. */
  private later: Buffer[] = [];
  private laterTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly socket: Duplex,
    /** The core (made after this output, whose callbacks it is given). */
    private readonly core: () => FramingCore,
    /** True once the socket closed: nothing more is written. */
    private readonly closed: () => boolean,
  ) {}

  /** Bytes the core framed: written with the rest of this turn's. */
  push(bytes: Buffer): void {
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    this.wake();
  }

  /**
   * Bytes that ride at the end of the next write (at most LATER_MAX_MS from now): a PING's ACK.
   * Behind an answer's frames, a grpc-go client reads the answer first, while its BDP PING is
   * still unanswered, so it sends no new PING for that answer.
   */
  pushLater(bytes: Buffer): void {
    this.later.push(bytes);
    if (this.laterTimer !== undefined) return;
    this.laterTimer = setTimeout(() => {
      this.laterTimer = undefined;
      this.takeLater();
      this.wake();
    }, LATER_MAX_MS);
    this.laterTimer.unref();
  }

  /** `pushLater`'s bytes join this turn's write. */
  private takeLater(): void {
    for (const b of this.later) {
      this.pending.push(b);
      this.pendingBytes += b.length;
    }
    this.later = [];
    clearTimeout(this.laterTimer);
    this.laterTimer = undefined;
  }

  /** Streams have bytes to frame: write this turn's frames once the turn's code has run. */
  wake(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    process.nextTick(() => this.writeOut());
  }

  /** Frames what streams have queued, then writes the turn's frames in one go. */
  writeOut(): void {
    if (this.closed()) {
      this.scheduled = false;
      return;
    }
    const core = this.core();
    // Still "scheduled" while streams frame their bytes: their output joins this write.
    core.flush();
    this.scheduled = false;
    if (this.later.length > 0 && this.pending.length > 0) this.takeLater();
    if (this.pending.length === 0) return;
    const pending = this.pending;
    const bytes = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    socketTaps.write?.(this.socket, bytes);
    let ok: boolean;
    if (pending.length === 1 || bytes <= JOIN_MAX_BYTES) {
      ok = this.socket.write(pending.length === 1 ? pending[0]! : Buffer.concat(pending, bytes));
    } else {
      this.socket.cork();
      ok = true;
      for (const p of pending) ok = this.socket.write(p);
      this.socket.uncork();
    }
    if (!ok && !core.outputHeld) {
      core.outputHeld = true;
      this.socket.once("drain", () => {
        core.outputHeld = false;
        this.wake();
      });
    }
  }
}
