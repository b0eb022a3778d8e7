// TCP proxies in front of every member's peer port, so that links between members can be cut
// one direction at a time. Member i advertises its proxy's address; the proxy forwards to the
// port member i really listens on. Every connection is attributed to the member that opened
// it by the sender its first request names (etcd's `X-Server-From`, see peer-sender.ts), so a
// connection from a into b's proxy carries a->b bytes upstream and b->a bytes downstream, and
// each direction obeys its own link state. The proxy reads the wire only: it works for any
// process that sends the header, on any OS, whoever owns the socket.

import net from "node:net";
import { peerSender } from "./peer-sender.js";

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

/**
 * The sending end of a connection whose first request names no member (etcd's probes and
 * version checks, a joining member asking for the membership). Its bytes follow the most cut of
 * the destination's links in that direction: they cross only what every member's would.
 */
const ANONYMOUS = -1;

const SEVERITY: Record<LinkState, number> = { open: 0, stall: 1, drop: 2 };

interface Pipe {
  /** Member index, or ANONYMOUS. */
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
  /** Attributed to the member their first request named. */
  named: number;
  /** Named no sender: carried under the destination's most cut link (ANONYMOUS). */
  anonymous: number;
  /** Of the named, those from the destination itself (etcd dials its own URL at times): no link to cut. */
  own: number;
  /** Named a sender that is no member: refused. */
  refused: number;
  /** The refused connections by the ID their first request named. */
  refusedSenders: Record<string, number>;
  resets: number;
  /** Chunks that went through a shape's queue (delayed or rate-capped) rather than straight on. */
  shapedChunks: number;
}

/** Member index of a sender ID (lowercase hex, as `X-Server-From` carries it); undefined: no member. */
export type SenderIndex = (id: string) => number | undefined | Promise<number | undefined>;

export class PeerNetwork {
  private readonly states: LinkState[][];
  private readonly shapes: (LinkShape | undefined)[][];
  private readonly servers: net.Server[] = [];
  private readonly connections = new Set<ProxiedConnection>();
  readonly stats: PeerNetworkStats = {
    connections: 0,
    named: 0,
    anonymous: 0,
    own: 0,
    refused: 0,
    refusedSenders: {},
    resets: 0,
    shapedChunks: 0,
  };

  /**
   * @param listen the proxy port for each member (what it advertises)
   * @param targets the port each member really listens on for peers
   * @param senderIndex which member a sender ID names
   */
  constructor(
    private readonly host: string,
    private readonly listen: readonly number[],
    private readonly targets: readonly number[],
    private readonly senderIndex: SenderIndex,
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
      for (const pipe of [c.up, c.down]) {
        if ((pipe.from === from || pipe.from === ANONYMOUS) && (pipe.to === to || pipe.to === ANONYMOUS))
          this.apply(c, pipe);
      }
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

  /** The state of the link a pipe's bytes cross. */
  private stateOf(pipe: Pipe): LinkState {
    if (pipe.from !== ANONYMOUS && pipe.to !== ANONYMOUS) return this.states[pipe.from][pipe.to];
    let worst: LinkState = "open";
    for (let j = 0; j < this.listen.length; j++) {
      const state = pipe.from === ANONYMOUS ? this.states[j][pipe.to] : this.states[pipe.from][j];
      if (SEVERITY[state] > SEVERITY[worst]) worst = state;
    }
    return worst;
  }

  private shapeOf(pipe: Pipe): LinkShape | undefined {
    return pipe.from === ANONYMOUS || pipe.to === ANONYMOUS ? undefined : this.shapes[pipe.from][pipe.to];
  }

  /**
   * The dialler's first request (read whole before a byte goes upstream, so nothing crosses
   * before its link is known) and the member it names.
   */
  private firstRequest(socket: net.Socket): Promise<{ head: Buffer; sender: ReturnType<typeof peerSender> }> {
    return new Promise((resolve, reject) => {
      let head = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const sender = peerSender(head);
        if (sender.kind === "more") return;
        socket.pause();
        socket.off("data", onData);
        socket.off("end", onEnd);
        socket.off("close", onEnd);
        resolve({ head, sender });
      };
      const onEnd = () => reject(new Error("closed before its first request"));
      socket.on("data", onData);
      socket.once("end", onEnd);
      socket.once("close", onEnd);
      socket.once("error", reject);
      socket.resume();
    });
  }

  private async accept(to: number, socket: net.Socket): Promise<void> {
    this.stats.connections++;
    const upstream = net.connect({ host: this.host, port: this.targets[to], allowHalfOpen: false });
    const connected = new Promise<void>((resolve, reject) => {
      upstream.once("connect", resolve);
      upstream.once("error", reject);
    });
    // A member that is down: the dialler learns it at once, as it would without a proxy.
    connected.catch(() => socket.destroy());
    // Until the sender is known only the member's connection preface can come back (HTTP/2's
    // SETTINGS: no request has reached it), and grpc-js sends its first call only once it has
    // that; HTTP/1.1 servers say nothing first.
    const preface = (chunk: Buffer) => socket.write(chunk);
    upstream.on("data", preface);
    let first: Awaited<ReturnType<PeerNetwork["firstRequest"]>>;
    let from = ANONYMOUS;
    try {
      first = await this.firstRequest(socket);
      upstream.off("data", preface);
      upstream.pause();
      if (first.sender.kind === "named") {
        const index = await this.senderIndex(first.sender.id);
        // A sender we cannot place could cross a cut link; refuse, and it will dial again.
        if (index === undefined) {
          this.stats.refused++;
          this.stats.refusedSenders[first.sender.id] = (this.stats.refusedSenders[first.sender.id] ?? 0) + 1;
          throw new Error(`sender ${first.sender.id} is no member`);
        }
        // From the destination itself: the link to itself is never cut (setLink ignores it).
        if (index === to) this.stats.own++;
        from = index;
      }
      await connected;
    } catch {
      socket.destroy();
      upstream.destroy();
      return;
    }
    if (from === ANONYMOUS) this.stats.anonymous++;
    else this.stats.named++;
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
      if (s.destroyed) end();
    }
    for (const pipe of [c.up, c.down]) {
      pipe.source.on("data", (chunk: Buffer) => this.carry(c, pipe, chunk));
    }
    this.carry(c, c.up, first.head);
    this.apply(c, c.up);
    this.apply(c, c.down);
  }

  private carry(c: ProxiedConnection, pipe: Pipe, chunk: Buffer): void {
    const state = this.stateOf(pipe);
    const shape = this.shapeOf(pipe);
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
    this.stats.shapedChunks++;
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
    const state = this.stateOf(pipe);
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
    const state = this.stateOf(pipe);
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
