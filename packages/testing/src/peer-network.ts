// TCP proxies in front of every member's peer port, so that links between members can be cut
// one direction at a time. Member i advertises its proxy's address; the proxy forwards to the
// port member i really listens on. Every connection is attributed to the member that opened
// it (see socket-owner.ts), so a connection from a into b's proxy carries a->b bytes upstream
// and b->a bytes downstream, and each direction obeys its own link state.

import net from "node:net";
import { connectionOwner } from "./socket-owner.js";

/**
 * open: bytes flow.
 * stall: bytes are held, not lost, as TCP does under a partition that heals before its
 *   timeouts; they flow again, in order, when the link opens.
 * drop: bytes are discarded. A TCP stream cannot have a hole, so when the link opens again
 *   every connection that lost bytes is reset, as a real connection would have timed out.
 */
export type LinkState = "open" | "stall" | "drop";

/**
 * How an open link carries bytes: each chunk arrives `delayMs` after it was sent, and no faster
 * than `bytesPerSecond` (0: no limit) — a slow or congested network path.
 */
export interface LinkShape {
  delayMs: number;
  bytesPerSecond: number;
}

/** Bytes a shaped pipe holds before it stops reading from its source (TCP's window, roughly). */
const SHAPED_WINDOW_BYTES = 1024 * 1024;

interface Pipe {
  from: number;
  to: number;
  source: net.Socket;
  sink: net.Socket;
  held: Buffer[];
  lostBytes: boolean;
  /** Chunks on their way through a shaped link, with when each arrives. */
  inFlight: { chunk: Buffer; at: number }[];
  inFlightBytes: number;
  /** When the last chunk sent through the shaped link arrives (bandwidth queueing). */
  lastArrival: number;
  timer: NodeJS.Timeout | undefined;
}

interface ProxiedConnection {
  /** Bytes from the member that dialled (upstream) and back to it (downstream). */
  up: Pipe;
  down: Pipe;
}

export interface PeerNetworkStats {
  connections: number;
  unattributed: number;
  resets: number;
}

export class PeerNetwork {
  private readonly states: LinkState[][];
  private readonly shapes: (LinkShape | undefined)[][];
  private readonly servers: net.Server[] = [];
  private readonly connections = new Set<ProxiedConnection>();
  readonly stats: PeerNetworkStats = { connections: 0, unattributed: 0, resets: 0 };

  /**
   * @param listen the proxy port for each member (what it advertises)
   * @param targets the port each member really listens on for peers
   * @param pids the current pid of each running member, for attributing connections
   */
  constructor(
    private readonly host: string,
    private readonly listen: readonly number[],
    private readonly targets: readonly number[],
    private readonly pids: () => ReadonlyMap<number, number>,
  ) {
    const n = listen.length;
    this.states = Array.from({ length: n }, () => new Array<LinkState>(n).fill("open"));
    this.shapes = Array.from({ length: n }, () => new Array<LinkShape | undefined>(n).fill(undefined));
  }

  async start(): Promise<void> {
    for (let to = 0; to < this.listen.length; to++) {
      const server = net.createServer({ pauseOnConnect: true }, (socket) => {
        this.accept(to, socket).catch(() => socket.destroy());
      });
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(this.listen[to], this.host, () => resolve());
      });
      this.servers.push(server);
    }
  }

  link(from: number, to: number): LinkState {
    return this.states[from][to];
  }

  /** Sets the state of the directed link from -> to. */
  setLink(from: number, to: number, state: LinkState): void {
    if (from === to) return;
    this.states[from][to] = state;
    for (const c of [...this.connections]) {
      for (const pipe of [c.up, c.down]) if (pipe.from === from && pipe.to === to) this.apply(c, pipe);
    }
  }

  /** Slows the directed link from -> to (undefined: full speed again, for new bytes). */
  shapeLink(from: number, to: number, shape: LinkShape | undefined): void {
    if (from === to) return;
    this.shapes[from][to] =
      shape !== undefined && (shape.delayMs > 0 || shape.bytesPerSecond > 0) ? shape : undefined;
  }

  /** Cuts (or restores) every link into and out of member i. */
  isolate(i: number, state: LinkState): void {
    for (let j = 0; j < this.listen.length; j++) {
      if (j === i) continue;
      this.setLink(i, j, state);
      this.setLink(j, i, state);
    }
  }

  healAll(): void {
    for (let a = 0; a < this.listen.length; a++)
      for (let b = 0; b < this.listen.length; b++) {
        this.shapeLink(a, b, undefined);
        this.setLink(a, b, "open");
      }
  }

  describeCuts(): string {
    const cuts: string[] = [];
    for (let a = 0; a < this.listen.length; a++) {
      for (let b = 0; b < this.listen.length; b++) {
        if (this.states[a][b] !== "open") cuts.push(`${a}->${b} ${this.states[a][b]}`);
        const shape = this.shapes[a]?.[b];
        if (shape !== undefined)
          cuts.push(`${a}->${b} +${shape.delayMs}ms ${shape.bytesPerSecond || "unlimited"}B/s`);
      }
    }
    return cuts.length === 0 ? "none" : cuts.join(", ");
  }

  async close(): Promise<void> {
    for (const c of this.connections) {
      for (const pipe of [c.up, c.down]) clearTimeout(pipe.timer);
      c.up.source.destroy();
      c.up.sink.destroy();
    }
    this.connections.clear();
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  private async accept(to: number, socket: net.Socket): Promise<void> {
    this.stats.connections++;
    // The dialler still holds its end while we look: it is waiting for our bytes or has sent
    // its first request, and the kernel keeps the socket in its fd table until it closes.
    let from: number | undefined;
    for (let attempt = 0; attempt < 3 && from === undefined; attempt++) {
      from = await connectionOwner(socket.remotePort ?? 0, this.listen[to], this.pids());
    }
    if (from === undefined || from === to) {
      // Unattributed bytes could cross a cut link; refuse, and the member will dial again.
      this.stats.unattributed++;
      socket.destroy();
      return;
    }
    const upstream = net.connect({ host: this.host, port: this.targets[to], allowHalfOpen: false });
    upstream.pause();
    const pipe = (from: number, to: number, source: net.Socket, sink: net.Socket): Pipe => ({
      from,
      to,
      source,
      sink,
      held: [],
      lostBytes: false,
      inFlight: [],
      inFlightBytes: 0,
      lastArrival: 0,
      timer: undefined,
    });
    const c: ProxiedConnection = {
      up: pipe(from, to, socket, upstream),
      down: pipe(to, from, upstream, socket),
    };
    this.connections.add(c);
    const end = () => {
      if (!this.connections.delete(c)) return;
      for (const p of [c.up, c.down]) clearTimeout(p.timer);
      socket.destroy();
      upstream.destroy();
    };
    for (const s of [socket, upstream]) {
      s.on("error", end);
      s.on("close", end);
    }
    for (const pipe of [c.up, c.down]) {
      pipe.source.on("data", (chunk: Buffer) => this.carry(c, pipe, chunk));
    }
    upstream.once("connect", () => {
      this.apply(c, c.up);
      this.apply(c, c.down);
    });
  }

  private carry(c: ProxiedConnection, pipe: Pipe, chunk: Buffer): void {
    const state = this.states[pipe.from][pipe.to];
    const shape = this.shapes[pipe.from][pipe.to];
    if (state === "open" && (shape !== undefined || pipe.inFlight.length > 0)) {
      this.send(c, pipe, chunk, shape);
    } else if (state === "open") {
      if (!pipe.sink.write(chunk)) {
        pipe.source.pause();
        pipe.sink.once("drain", () => this.apply(c, pipe));
      }
    } else if (state === "stall") {
      pipe.held.push(chunk);
      pipe.source.pause();
    } else {
      pipe.lostBytes = true;
    }
  }

  /** A chunk into a shaped link: it arrives after the delay, behind what the bandwidth queues. */
  private send(c: ProxiedConnection, pipe: Pipe, chunk: Buffer, shape: LinkShape | undefined): void {
    const now = performance.now();
    const transmit =
      shape !== undefined && shape.bytesPerSecond > 0 ? (chunk.length * 1000) / shape.bytesPerSecond : 0;
    const at = Math.max(now + (shape?.delayMs ?? 0), pipe.lastArrival + transmit);
    pipe.lastArrival = at;
    pipe.inFlight.push({ chunk, at });
    pipe.inFlightBytes += chunk.length;
    if (pipe.inFlightBytes > SHAPED_WINDOW_BYTES) pipe.source.pause();
    if (pipe.timer === undefined) this.deliverLater(c, pipe);
  }

  private deliverLater(c: ProxiedConnection, pipe: Pipe): void {
    const next = pipe.inFlight[0];
    if (next === undefined) return;
    pipe.timer = setTimeout(
      () => {
        pipe.timer = undefined;
        this.deliver(c, pipe);
      },
      Math.max(0, next.at - performance.now()),
    );
  }

  /** Hands on what has arrived; a link cut meanwhile holds (stall) or loses (drop) the rest. */
  private deliver(c: ProxiedConnection, pipe: Pipe): void {
    if (!this.connections.has(c)) return;
    const state = this.states[pipe.from][pipe.to];
    if (state === "stall") {
      pipe.held.unshift(...pipe.inFlight.map((f) => f.chunk));
    } else if (state === "drop") {
      if (pipe.inFlight.length > 0) pipe.lostBytes = true;
    }
    if (state !== "open") {
      pipe.inFlight = [];
      pipe.inFlightBytes = 0;
      return;
    }
    const now = performance.now();
    while (pipe.inFlight.length > 0 && pipe.inFlight[0]!.at <= now) {
      const { chunk } = pipe.inFlight.shift()!;
      pipe.inFlightBytes -= chunk.length;
      pipe.sink.write(chunk);
    }
    if (pipe.inFlightBytes <= SHAPED_WINDOW_BYTES / 2 && !pipe.sink.writableNeedDrain) pipe.source.resume();
    this.deliverLater(c, pipe);
  }

  /** Brings a pipe in line with its link's current state. */
  private apply(c: ProxiedConnection, pipe: Pipe): void {
    if (!this.connections.has(c)) return;
    const state = this.states[pipe.from][pipe.to];
    if (state === "open") {
      if (pipe.lostBytes) {
        this.stats.resets++;
        c.up.source.resetAndDestroy();
        c.up.sink.resetAndDestroy();
        return;
      }
      while (pipe.held.length > 0) pipe.sink.write(pipe.held.shift()!);
      if (pipe.sink.writableNeedDrain) pipe.sink.once("drain", () => this.apply(c, pipe));
      else pipe.source.resume();
    } else if (state === "stall") {
      pipe.source.pause();
    } else {
      // Reading and discarding keeps the sender from noticing anything but silence.
      for (const chunk of pipe.held.splice(0)) if (chunk.length > 0) pipe.lostBytes = true;
      pipe.source.resume();
    }
  }
}
