// Who may be shown which cached Range answers while auth is on. Pure: the unary path and the
// cluster tracker report what they see; no sockets.
//
// The gateway does not hold the role table. It learns permissions from the members, who check
// every call: when a member answers a caller's Range at auth revision R (the revision the
// caller's JWT was issued at: a member refuses a token older than its auth store, "revision of
// auth store is old", and a lagging one refuses a token newer than itself the same way), then
// "user may read [key, range_end)" is true of the auth store at R, and stays true of R forever:
// every change to users, roles or permissions makes a new revision. So a memo is stamped with R
// and holds while R is the newest auth revision the gateway knows of. Learning a newer one (a
// newer token, an AuthStatus answer, a NATS auth event, a member refusing a token as old) drops
// every memo before any cached answer is served again: a caller whose role was revoked is sent
// to a member, which refuses them. An auth change this gateway forwarded stops all serving from
// the moment it is acknowledged until the revision it led to is read back from the member that
// applied it (a change need not raise the revision, so it cannot be guessed).
//
// Root may read everything (etcd's root role, which the root user keeps while auth is on: etcd
// refuses to revoke it, and AuthEnable requires it), so root needs no memo, only a current token.
import type { TokenClaims } from "@etcd-ts/api";
import type { CacheableRange } from "../wire/etcd-messages.js";

const ROOT_USER = "root";

/** Memos held at most (user and range pairs); past it they are dropped and learnt again. */
const MAX_MEMOS = 100_000;

type Range = Pick<CacheableRange, "key" | "rangeEnd">;

function rangeId(range: Range): string {
  return `${range.key.length}:${range.key}${range.rangeEnd}`;
}

export class ReadPermissions {
  /** The newest auth revision known: a token below it is old on every member that knows it too. */
  revision = 0;
  /** "user may read range" at `revision`, by user. */
  private readonly memos = new Map<string, Set<string>>();
  private count = 0;
  /** Changes acknowledged whose resulting revision is not known yet. */
  private unsettled = 0;

  get size(): number {
    return this.count;
  }

  /** Whether `caller` may be shown a cached answer for `range` now. */
  permits(caller: TokenClaims, range: Range): boolean {
    if (caller.revision !== this.revision || this.unsettled > 0) return false;
    if (caller.username === ROOT_USER) return true;
    return this.memos.get(caller.username)?.has(rangeId(range)) ?? false;
  }

  /** A member answered `caller`'s Range of `range`: it found the read permitted at the token's revision. */
  granted(caller: TokenClaims, range: Range): void {
    this.observe(caller.revision);
    if (caller.revision !== this.revision || this.unsettled > 0 || caller.username === ROOT_USER) return;
    const id = rangeId(range);
    if (this.memos.get(caller.username)?.has(id)) return;
    if (this.count >= MAX_MEMOS) this.forget();
    let ranges = this.memos.get(caller.username);
    if (ranges === undefined) {
      ranges = new Set();
      this.memos.set(caller.username, ranges);
    }
    ranges.add(id);
    this.count++;
  }

  /** The auth store is known to have reached `revision`. */
  observe(revision: number): void {
    if (revision <= this.revision) return;
    this.revision = revision;
    this.forget();
  }

  /**
   * An auth change was acknowledged through this gateway: nothing is permitted from here until
   * `changeSettled` gives the revision the member that applied it has now (a change may or may
   * not raise the revision: AuthEnable and a role granted twice do not).
   */
  changeAcknowledged(): void {
    this.unsettled++;
    this.forget();
  }

  /**
   * The auth revision of the member that applied an acknowledged change, read after it answered
   * (so at or past the change); undefined when it could not be read: then the change is taken to
   * have raised the revision, which may refuse current tokens the cache (never a member) until a
   * newer revision is seen, but never serves an old one.
   */
  changeSettled(revision: number | undefined): void {
    if (this.unsettled > 0) this.unsettled--;
    this.observe(revision ?? this.revision + 1);
  }

  /** An auth change may have been applied (its outcome is unknown): taken as raising the revision. */
  changed(): void {
    this.observe(this.revision + 1);
  }

  /** Auth turned on or off: nothing learnt before holds. */
  reset(): void {
    this.forget();
  }

  private forget(): void {
    this.memos.clear();
    this.count = 0;
  }
}
