// A service's NATS connection for control-plane events. Nothing here may slow or fail the
// caller: publish() queues (bounded, oldest dropped) and returns; the connection is made and
// remade in the background, forever; subscriptions and reply handlers registered at any time
// are (re)established on every connection. NATS is never the source of truth, so a service
// runs the same with this connected, disconnected, or never connected.

import { type Msg, type NatsConnection, connect as natsConnect, type Subscription } from "nats";
import { decodeEvent, encodeEvent, type Topic } from "./topics.js";

/**
 * Why `value` is not a list of NATS URLs (comma-separated nats://host:port or tls://host:port,
 * what the client takes), or undefined when it is one or empty (no NATS). Every service's flag
 * parser reports it as its own configuration error.
 */
export function natsUrlProblem(flag: string, value: string): string | undefined {
  for (const url of value.split(",").filter((u) => u.trim() !== "")) {
    if (!/^(nats|tls):\/\/[^\s/]+$/.test(url.trim())) {
      return `--${flag} must be nats://host:port, got ${JSON.stringify(url)}`;
    }
  }
  return undefined;
}

export type ControlPlaneLog = (
  level: "info" | "warn",
  message: string,
  details?: Record<string, unknown>,
) => void;

export interface ControlPlaneOptions {
  /** nats://host:port, several comma-separated. */
  url: string;
  /** The client name nats-server shows (`connz`). */
  name: string;
  /** Events held while disconnected; past it the oldest go. Default 256. */
  maxBuffered?: number;
  /** Pause between connection attempts. Default 250 ms. */
  reconnectWaitMs?: number;
  log?: ControlPlaneLog;
}

export interface ControlPlaneCounters {
  published: number;
  /** Dropped from a full buffer, or refused by a closing connection. */
  dropped: number;
  received: number;
  /** Messages that were not the topic's JSON shape. */
  malformed: number;
  /** Successful (re)connections. */
  connects: number;
}

interface Registration {
  subject: string;
  onMessage(msg: Msg): void;
  /** A queue group: one member of the group gets each message (reply handlers). */
  queue: string | undefined;
  /** The live subscription on the current connection. */
  sub: Subscription | undefined;
}

const DEFAULT_MAX_BUFFERED = 256;

export class ControlPlane {
  readonly counters: ControlPlaneCounters = {
    published: 0,
    dropped: 0,
    received: 0,
    malformed: 0,
    connects: 0,
  };
  private nc: NatsConnection | undefined;
  private isConnected = false;
  private closed = false;
  private readonly outbox: { subject: string; data: Uint8Array }[] = [];
  private drainScheduled = false;
  private readonly registrations = new Set<Registration>();
  private readonly connectionListeners = new Set<(connected: boolean) => void>();
  private retryTimer: NodeJS.Timeout | undefined;
  private wakeRetry: (() => void) | undefined;
  private readonly maxBuffered: number;
  private readonly log: ControlPlaneLog;
  private readonly running: Promise<void>;

  private constructor(private readonly options: ControlPlaneOptions) {
    this.maxBuffered = options.maxBuffered ?? DEFAULT_MAX_BUFFERED;
    this.log = options.log ?? (() => {});
    this.running = this.connectLoop();
  }

  /** Starts connecting in the background and returns at once. */
  static start(options: ControlPlaneOptions): ControlPlane {
    return new ControlPlane(options);
  }

  get connected(): boolean {
    return this.isConnected;
  }

  /** Called with true on every (re)connection, false on every loss. */
  onConnection(listener: (connected: boolean) => void): () => void {
    this.connectionListeners.add(listener);
    return () => this.connectionListeners.delete(listener);
  }

  /** Queues an event and returns; it leaves on a later turn of the event loop. */
  publish<T>(topic: Topic<T>, payload: T): void {
    if (this.closed) return;
    this.outbox.push({ subject: topic.subject, data: encodeEvent(payload) });
    if (this.outbox.length > this.maxBuffered) {
      this.outbox.shift();
      this.counters.dropped++;
    }
    this.scheduleDrain();
  }

  /** Calls `handler` for every well-formed event on the topic, on every connection from now on. */
  subscribe<T>(topic: Topic<T>, handler: (payload: T, subject: string) => void): () => void {
    return this.register(topic.subject, (msg) => {
      const payload = this.decode(topic, msg);
      if (payload !== undefined) handler(payload, msg.subject);
    });
  }

  /**
   * Answers requests on the topic with `handler`'s result (JSON). One answer per request, from
   * one responder: registered in a queue group, so several replicas of a service share the work.
   */
  reply<Q, R>(topic: Topic<Q>, handler: (request: Q) => Promise<R>, malformed: () => R): () => void {
    return this.register(
      topic.subject,
      (msg) => {
        const request = this.decode(topic, msg);
        const answer = request === undefined ? Promise.resolve(malformed()) : handler(request);
        answer.then(
          (result) => this.respond(msg, result),
          (err: unknown) => this.log("warn", "control-plane reply handler failed", { error: String(err) }),
        );
      },
      topic.subject,
    );
  }

  /** One request/reply round; rejects at once when not connected. */
  async request<Q, R>(topic: Topic<Q>, replyTopic: Topic<R>, payload: Q, timeoutMs: number): Promise<R> {
    const nc = this.nc;
    if (nc === undefined || !this.isConnected) throw new Error("NATS is not connected");
    const msg = await nc.request(topic.subject, encodeEvent(payload), { timeout: timeoutMs });
    const reply = decodeEvent(replyTopic, msg.data);
    if (reply === undefined) throw new Error(`malformed reply on ${topic.subject}`);
    return reply;
  }

  /**
   * Resolves once connected and the server has processed everything sent so far (subscriptions
   * included): a test's "my subscriber is in place". Rejects after `timeoutMs`.
   */
  async ready(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.isConnected || this.nc === undefined) {
      if (this.closed || Date.now() > deadline) throw new Error(`NATS not connected within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await this.nc.flush();
  }

  /** Sends what is queued (bounded wait), then closes; no reconnection after this. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.drainQueue();
    this.closed = true;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.wakeRetry?.();
    const nc = this.nc;
    if (nc !== undefined) {
      await Promise.race([nc.flush().catch(() => {}), new Promise((r) => setTimeout(r, 1_000).unref())]);
      await nc.close().catch(() => {});
    }
    await this.running;
  }

  private register(subject: string, onMessage: (msg: Msg) => void, queue?: string): () => void {
    const registration: Registration = { subject, onMessage, queue, sub: undefined };
    this.registrations.add(registration);
    if (this.nc !== undefined) this.attach(this.nc, registration);
    return () => {
      this.registrations.delete(registration);
      registration.sub?.unsubscribe();
      registration.sub = undefined;
    };
  }

  private attach(nc: NatsConnection, registration: Registration): void {
    try {
      registration.sub = nc.subscribe(registration.subject, {
        ...(registration.queue === undefined ? {} : { queue: registration.queue }),
        callback: (err, msg) => {
          if (err === null) registration.onMessage(msg);
        },
      });
    } catch (err) {
      // A connection closing under us: the next connection attaches it again.
      this.log("warn", "control-plane subscribe failed", {
        subject: registration.subject,
        error: String(err),
      });
    }
  }

  private decode<T>(topic: Topic<T>, msg: Msg): T | undefined {
    this.counters.received++;
    const payload = decodeEvent(topic, msg.data);
    if (payload === undefined) {
      this.counters.malformed++;
      this.log("warn", "malformed control-plane message", { subject: msg.subject });
    }
    return payload;
  }

  private respond(msg: Msg, result: unknown): void {
    try {
      msg.respond(encodeEvent(result));
    } catch (err) {
      this.log("warn", "control-plane reply not sent", { subject: msg.subject, error: String(err) });
    }
  }

  private scheduleDrain(): void {
    if (this.drainScheduled || !this.isConnected) return;
    this.drainScheduled = true;
    setImmediate(() => {
      this.drainScheduled = false;
      this.drainQueue();
    });
  }

  private drainQueue(): void {
    const nc = this.nc;
    while (nc !== undefined && this.isConnected && this.outbox.length > 0) {
      const { subject, data } = this.outbox.shift()!;
      try {
        nc.publish(subject, data);
        this.counters.published++;
      } catch {
        this.counters.dropped++;
      }
    }
  }

  private setConnected(connected: boolean): void {
    if (this.isConnected === connected) return;
    this.isConnected = connected;
    if (connected) {
      this.counters.connects++;
      this.scheduleDrain();
    }
    for (const listener of this.connectionListeners) listener(connected);
  }

  /** Connects (retrying every reconnectWaitMs until it can), then lets nats.js reconnect forever. */
  private async connectLoop(): Promise<void> {
    let attempts = 0;
    while (!this.closed) {
      let nc: NatsConnection;
      try {
        nc = await natsConnect({
          servers: this.options.url.split(",").map((s) => s.trim()),
          name: this.options.name,
          reconnect: true,
          maxReconnectAttempts: -1,
          reconnectTimeWait: this.options.reconnectWaitMs ?? 250,
          reconnectJitter: 50,
          timeout: 2_000,
          pingInterval: 5_000,
          maxPingOut: 2,
        });
      } catch (err) {
        if (attempts++ === 0) {
          this.log("warn", "NATS not reachable; retrying in the background", {
            url: this.options.url,
            error: String(err),
          });
        }
        await new Promise<void>((resolve) => {
          this.wakeRetry = resolve;
          this.retryTimer = setTimeout(resolve, this.options.reconnectWaitMs ?? 250);
          this.retryTimer.unref();
        });
        continue;
      }
      if (this.closed) {
        await nc.close().catch(() => {});
        return;
      }
      attempts = 0;
      this.nc = nc;
      for (const registration of this.registrations) {
        this.attach(nc, registration);
      }
      this.log("info", "NATS connected", { url: this.options.url });
      this.setConnected(true);
      void this.watchStatus(nc);
      // nats.js reconnects (and re-subscribes) on its own; it only ends on close().
      await nc.closed();
      this.setConnected(false);
      this.nc = undefined;
      for (const registration of this.registrations) registration.sub = undefined;
    }
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const status of nc.status()) {
      if (status.type === "disconnect") {
        this.log("warn", "NATS disconnected; polling carries on", { server: String(status.data) });
        this.setConnected(false);
      } else if (status.type === "reconnect") {
        this.log("info", "NATS reconnected", { server: String(status.data) });
        this.setConnected(true);
      }
    }
  }
}
