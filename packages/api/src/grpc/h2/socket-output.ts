// An HTTP/2 connection's frames out to its socket, for either side (server-connection.ts, and the
// peer transport's client connections): everything queued during one event-loop turn leaves in
// one socket write (small pieces joined, large ones corked as they are), and while the socket is full
// the core holds its DATA (`outputHeld`) until the socket drains; control frames still go.
// A large answer (a full list of 280 MB) goes out TURN_DATA_BYTES at a time, each piece in a
// later turn of the event loop than the last, so the other connections' reads (a put, a
// follower's acknowledgement) are served between its pieces.

import type { Duplex } from "node:stream";

const EMPTY = Buffer.alloc(0);
/** joinSmall: pieces from this size on are written as they are, never copied. */
const COPY_BELOW_BYTES = 8 * 1024;
/** joinSmall: a run of small pieces is joined up to this many bytes per buffer. */
const JOIN_MAX_BYTES = 256 * 1024;
/**
 * DATA framed per write at most. Past it the socket is full (far above its 16 KiB high-water
 * mark), and the next piece waits for its drain and then for the event loop's check phase
 * (setImmediate), after the loop has polled for I/O: while the kernel takes the bytes a write
 * completes at once and 'drain' comes in a nextTick, so waking on 'drain' alone framed and wrote
 * the whole flow-control window (grpc-go's grows with its bandwidth estimate) in one turn.
 * A put beside a full list waits a turn per hop, and a turn writes this much to a loopback
 * socket: 256 KiB rather than 1 MiB took its p99 from 39-64 to 15-49 ms in three quiet rounds
 * of 1,000,000 keys (README, full list).
 */
const TURN_DATA_BYTES = 256 * 1024;

/**
 * Bytes read from one socket in one event-loop turn, past which it waits for the next turn.
 * libuv reads a readable socket up to 32 times (64 KiB each) before it serves the next ready
 * one, and each read's frames are handled before the next read: a member answering a full list
 * to the gateway held the gateway's loop for up to 2 MiB of relaying at a time, with the
 * client's puts (another socket) waiting behind it.
 */
const TURN_READ_BYTES = 256 * 1024;

/** The longest `pushLater`'s bytes wait for another write before they go alone. */
const LATER_MAX_MS = 5;

/** What the output needs of a protocol core (H2ServerConnection, H2ClientConnection). */
export interface FramingCore {
  /** Frames what streams have queued, up to `budget` bytes of DATA; the frames come back through `push` at once. */
  flush(budget: number): number;
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
  /** Callbacks for once what is pending now has been written (SessionIo.written). */
  private afterWrite: (() => void)[] = [];

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

  /** Runs `done` once every byte pushed so far has been written to the socket. */
  written(done: () => void): void {
    this.afterWrite.push(done);
    this.wake();
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
    const framed = core.flush(TURN_DATA_BYTES);
    this.scheduled = false;
    if (this.later.length > 0 && this.pending.length > 0) this.takeLater();
    // A socket's write callbacks run in order, each once its bytes are with the kernel.
    let done: (() => void) | undefined;
    if (this.afterWrite.length > 0) {
      const callbacks = this.afterWrite;
      this.afterWrite = [];
      done = () => {
        for (const cb of callbacks) cb();
      };
    }
    if (this.pending.length === 0) {
      if (done !== undefined) this.socket.write(EMPTY, done);
      return;
    }
    const pending = this.pending;
    const bytes = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    socketTaps.write?.(this.socket, bytes);
    let ok: boolean;
    const pieces = joinSmall(pending);
    if (pieces.length === 1) {
      ok = this.socket.write(pieces[0]!, done);
    } else {
      // One writev of the pieces: a large answer's DATA is not copied into a write buffer.
      this.socket.cork();
      ok = true;
      const last = pieces.length - 1;
      for (let i = 0; i < last; i++) ok = this.socket.write(pieces[i]!);
      ok = this.socket.write(pieces[last]!, done);
      this.socket.uncork();
    }
    // The budget was used up: more DATA may be waiting, which goes after the loop has polled
    // for I/O (see TURN_DATA_BYTES). Smaller writes go on as soon as the socket drains.
    const more = framed >= TURN_DATA_BYTES;
    if (!ok && !core.outputHeld) {
      core.outputHeld = true;
      // Control frames still go meanwhile, written with whatever else the turn produces.
      this.socket.once("drain", () => {
        if (more) setImmediate(() => this.resume(core));
        else this.resume(core);
      });
    } else if (ok && more) {
      // A socket whose high-water mark is above the budget: the rest in a later turn all the same.
      setImmediate(() => this.wake());
    }
  }

  private resume(core: FramingCore): void {
    core.outputHeld = false;
    this.wake();
  }
}

/**
 * A socket's bytes per turn of the event loop: past TURN_READ_BYTES the socket waits (paused)
 * until the loop's check phase (setImmediate, after it has polled the other sockets).
 */
class ReadTurns {
  private turnBytes = 0;
  private nextTurn = false;
  private paused = false;

  constructor(private readonly socket: Duplex) {}

  /** `bytes` were handed over: false when the socket must now pause until the next turn. */
  spend(bytes: number): boolean {
    this.turnBytes += bytes;
    if (!this.nextTurn) {
      this.nextTurn = true;
      setImmediate(this.turnEnded);
    }
    if (this.turnBytes < TURN_READ_BYTES || this.paused) return true;
    this.paused = true;
    return false;
  }

  private readonly turnEnded = (): void => {
    this.nextTurn = false;
    this.turnBytes = 0;
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  };
}

/**
 * Hands `socket`'s bytes to `receive` as they come, at most about TURN_READ_BYTES in one turn of
 * the event loop (ReadTurns). Safe for any stream protocol: TCP holds what is not read yet
 * (its window, then the peer's flow control), and the bytes still come in order, only later.
 * While paused, the Readable keeps at most one more read (its high-water mark is below a read)
 * and then stops reading the socket, which ends libuv's run of reads on it.
 */
export function readInTurns(socket: Duplex, receive: (chunk: Buffer) => void): void {
  const turns = new ReadTurns(socket);
  socket.on("data", (chunk: Buffer) => {
    socketTaps.data?.(socket, chunk.length);
    receive(chunk);
    if (!turns.spend(chunk.length)) socket.pause();
  });
}

/**
 * RecycledReads: bytes per read, a turn's budget in one read (node's own reads are 64 KiB): one
 * read, one parse and one relayed write per turn. Paired at 1,000,000 keys through the gateway
 * (6 rounds), 256 KiB vs 64 KiB reads: puts' p99 median 15.9 vs 21.7 ms (main: 29.7). The cost:
 * a held 16 KiB frame keeps its whole buffer out of reuse (a relay stalled behind a slow client
 * holds at most its stream's window of frames, mostly contiguous). A turn may hand over up to
 * ~512 KiB (a read short of the budget by a carried frame, then a whole one): sizing each read to
 * the budget's rest instead was worse in a paired run (p99 22.5 vs 14.2 ms, JOURNAL gwrelay2).
 */
export const RECYCLED_READ_BYTES = 256 * 1024;
/** RecycledReads: buffers kept for reuse at most (the rest are left to the GC): 2 MiB. */
const RECYCLED_FREE_MAX = 8;

interface ReadSlot {
  readonly buf: Buffer;
  /** Holds on its bytes: the read being handled, and every `hold` not yet released. */
  holds: number;
}

/**
 * A plain TCP socket's reads into buffers that are reused (net.connect's `onread`), in turns as
 * readInTurns. Node allocates a new 64 KiB buffer for every read otherwise: the gateway relaying
 * a full list of 280 MB allocated as much outside the heap, and V8 answers that much external
 * memory with a full mark-compact every few MB (a 300,000-key list: 8 of 5-32 ms each in one
 * second, the puts beside it waiting). A frame left incomplete at a read's end is moved to the
 * start of the next read's buffer (H2Session.receive's `leaveRest`), not joined into a new one.
 * The guarantee it relies on: a buffer is read into again only once nothing holds a part of it.
 * `receive` must `hold` any part it keeps past its return (a relayed DATA payload until
 * written to the client's socket), and never read it after releasing.
 */
export class RecycledReads {
  private readonly free: ReadSlot[] = [];
  /** The buffer the next read goes into. */
  private slot: ReadSlot = RecycledReads.newSlot();
  /** Bytes at the start of `slot` that the last read left (a frame's beginning). */
  private carried = 0;
  /** The slot whose bytes `receive` is handling now. */
  private handling: ReadSlot | undefined;
  private socket: Duplex | undefined;
  private turns: ReadTurns | undefined;
  /** Where the carried bytes start in `slot` (the last read's end minus the carry). */
  private carryFrom = 0;
  /** Reads that had to take a new buffer (none free): for tests and profiles. */
  allocated = 1;

  /** `receive`: the bytes read (after the carried ones); returns how many at its end to carry. */
  constructor(private readonly receive: (bytes: Buffer) => number) {}

  /** For net.connect's options. */
  readonly onread = {
    buffer: (): Buffer => this.target(),
    callback: (bytes: number): boolean => this.read(bytes),
  };

  /** The socket made with `onread`: its reads are counted in turns from now on. */
  attach(socket: Duplex): void {
    this.socket = socket;
    this.turns = new ReadTurns(socket);
  }

  /**
   * While `receive` runs: keeps the buffer `view` is part of from being read into until the
   * returned function runs (once). undefined: `view` is not in a recycled buffer (a copy).
   * A hold never released only keeps its buffer out of reuse (the GC takes it like any other).
   */
  hold(view: Uint8Array): (() => void) | undefined {
    const slot = this.handling;
    if (slot === undefined || view.buffer !== slot.buf.buffer) return undefined;
    slot.holds++;
    return () => this.release(slot);
  }

  private read(bytes: number): boolean {
    if (this.socket !== undefined) socketTaps.data?.(this.socket, bytes);
    const slot = this.slot;
    const length = this.carried + bytes;
    slot.holds++;
    this.handling = slot;
    let carry: number;
    try {
      carry = this.receive(slot.buf.subarray(0, length));
    } finally {
      this.handling = undefined;
      slot.holds--;
    }
    // The next read's buffer starts with them (target).
    this.carryFrom = length - carry;
    this.carried = carry;
    return this.turns?.spend(bytes) ?? true;
  }

  /** net's onread.buffer: after each read, where the next one goes. */
  private target(): Buffer {
    const old = this.slot;
    if (old.holds > 0) {
      // Parts of it are still held: the next read takes another buffer.
      const next = this.free.pop() ?? this.fresh();
      if (this.carried > 0) old.buf.copy(next.buf, 0, this.carryFrom, this.carryFrom + this.carried);
      this.slot = next;
    } else if (this.carried > 0) {
      old.buf.copy(old.buf, 0, this.carryFrom, this.carryFrom + this.carried);
    }
    return this.slot.buf.subarray(this.carried);
  }

  private release(slot: ReadSlot): void {
    slot.holds--;
    if (slot.holds === 0 && slot !== this.slot && this.free.length < RECYCLED_FREE_MAX) this.free.push(slot);
  }

  private fresh(): ReadSlot {
    this.allocated++;
    return RecycledReads.newSlot();
  }

  private static newSlot(): ReadSlot {
    return { buf: Buffer.allocUnsafeSlow(RECYCLED_READ_BYTES), holds: 0 };
  }
}

/**
 * `pieces` in order, each run of pieces under COPY_BELOW_BYTES joined into one buffer (up to
 * JOIN_MAX_BYTES each: many small frames or messages of a turn become one write, one DATA frame),
 * the larger pieces as they are. A large answer (a full list's 280 KB chunks at a member, the
 * 16 KiB DATA payloads the gateway relays) is then never copied on its way to the socket: the
 * copies were as many bytes again of garbage outside the heap, each megabyte of it bringing
 * the next GC nearer.
 */
export function joinSmall(pieces: readonly Buffer[]): readonly Buffer[] {
  if (pieces.length === 1) return pieces;
  const out: Buffer[] = [];
  let run: Buffer[] = [];
  let runBytes = 0;
  const endRun = () => {
    if (run.length === 1) out.push(run[0]!);
    else if (run.length > 1) out.push(Buffer.concat(run, runBytes));
    run = [];
    runBytes = 0;
  };
  for (const p of pieces) {
    if (p.length >= COPY_BELOW_BYTES) {
      endRun();
      out.push(p);
      continue;
    }
    if (runBytes + p.length > JOIN_MAX_BYTES) endRun();
    run.push(p);
    runBytes += p.length;
  }
  endRun();
  return out;
}
