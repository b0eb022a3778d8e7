// The gateway's copy of the JWT verification keys services/auth publishes, read where members
// keep them: the replicated auth store, listed by any member's AuthBackend.ListSigningKeys (on
// its peer URL, after a linearizable read; proto/internal/auth-backend.proto). Re-read on a
// period, and at once when a token names a key not held: services/auth publishes (commits) a
// key before it signs with it, so a list read after such a token arrived holds its key, and a
// rotation never refuses a good token. A key still unknown after that read is unknown to the
// members too (they wait for the same commit, then refuse).
import { authBackend, VerificationKeys } from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { ReadBarrier } from "../cache/read-barrier.js";
import type { UpstreamTls } from "../cluster/upstream-client.js";

const CALL_TIMEOUT_MS = 5_000;
/**
 * After a list no member answered (peer URLs unreachable from here), tokens naming unknown keys
 * pass to the members for this long instead of each waiting for another failed list.
 */
const FAILED_LIST_BACKOFF_MS = 5_000;

export class PublishedKeyList {
  readonly keys = new VerificationKeys();
  private readonly clients = new Map<string, authBackend.AuthBackendClient>();
  private readonly lists = new ReadBarrier<void>(() => this.list());
  private timer: NodeJS.Timeout | undefined;
  /** Where the last successful list came from (tried first next time). */
  private lastPeer = 0;
  private failedAt = Number.NEGATIVE_INFINITY;
  private everListed = false;

  constructor(
    /** The members' peer URLs, as MemberList names them. */
    private readonly peerUrls: () => readonly string[],
    private readonly tls: UpstreamTls | undefined,
    private readonly logger: Logger,
    refreshIntervalMs: number,
  ) {
    this.timer = setInterval(() => void this.lists.afterNow().catch(() => {}), refreshIntervalMs);
    this.timer.unref();
  }

  /** A list read after this call; rejects when no member answered (the caller passes the token on). */
  refetch(): Promise<void> {
    if (performance.now() - this.failedAt < FAILED_LIST_BACKOFF_MS)
      return Promise.reject(new Error("published JWT keys: members unreachable, backing off"));
    return this.lists.afterNow();
  }

  close(): void {
    clearInterval(this.timer);
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  /**
   * Lists as soon as members are known, for a gateway started before its members answered:
   * `onMembersChange` registers a listener the member list calls on each change. Once a list was
   * read, the period and unknown-key refetches keep it current.
   */
  listWhenMembersKnown(onMembersChange: (listener: () => void) => void): void {
    onMembersChange(() => {
      if (!this.everListed && this.peerUrls().length > 0) void this.refetch().catch(() => {});
    });
  }

  /** Whether a list has been read from a member yet. */
  get listed(): boolean {
    return this.everListed;
  }

  private async list(): Promise<void> {
    const urls = this.peerUrls();
    // Before the first member answered the gateway's probe (started beside its members), there
    // is no one to ask yet: not a failure to report or back off from. The gateway lists again
    // once it knows the members.
    if (urls.length === 0) throw new Error("no member peer URL known yet");
    let last: unknown;
    for (let i = 0; i < urls.length; i++) {
      const index = (this.lastPeer + i) % urls.length;
      try {
        const set = await this.listFrom(urls[index]!);
        this.keys.replaceAll(set.keys);
        this.everListed = true;
        this.lastPeer = index;
        this.failedAt = Number.NEGATIVE_INFINITY;
        return;
      } catch (err) {
        last = err;
      }
    }
    this.failedAt = performance.now();
    this.logger.warn({ err: String(last) }, "published JWT keys: no member answered ListSigningKeys");
    throw last;
  }

  private listFrom(url: string): Promise<authBackend.SigningKeySet> {
    const client = this.clientFor(url);
    return new Promise((resolve, reject) =>
      client.listSigningKeys(
        {},
        new grpc.Metadata(),
        { deadline: Date.now() + CALL_TIMEOUT_MS },
        (err: grpc.ServiceError | null, set?: authBackend.SigningKeySet) =>
          err !== null || set === undefined ? reject(err) : resolve(set),
      ),
    );
  }

  private clientFor(url: string): authBackend.AuthBackendClient {
    let client = this.clients.get(url);
    if (client === undefined) {
      const parsed = new URL(url.includes("://") ? url : `http://${url}`);
      if (parsed.protocol === "https:" && this.tls === undefined)
        throw new Error(`${url}: an https:// peer URL needs --cacert`);
      const credentials =
        parsed.protocol === "https:"
          ? grpc.credentials.createSsl(this.tls!.ca ?? null, this.tls!.key ?? null, this.tls!.cert ?? null)
          : grpc.credentials.createInsecure();
      client = new authBackend.AuthBackendClient(parsed.host, credentials, {
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 1_000,
      });
      this.clients.set(url, client);
    }
    return client;
  }
}
