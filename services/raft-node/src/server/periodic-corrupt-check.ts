// --experimental-corrupt-check-time (etcd 3.4's monitorKVHash and checkHashKV): every interval
// the leader hashes its store (HashKV at its current revision), asks every peer for its HashKV
// at that revision, confirms it still leads (a linearizable read) and hashes again; then:
//  - its own hash changed at the same revision and compaction: its own data is unstable;
//  - a peer is at a higher revision, or compacted further, than the leader now is;
//  - a peer at the leader's first compaction revision has another hash;
// and any of these raises the CORRUPT alarm once per check. etcd 3.4.23 raises it with member
// ID 0 ("it isn't clear which member's data is corrupted"), and so do we; the alarm refuses
// writes cluster-wide (etcd's applierV3Corrupt) until an operator disarms it. Peers that do not
// answer are skipped, as in etcd. Peers are asked on their client URLs (see
// initial-corrupt-check.ts).
import type { Logger } from "pino";
import { formatId } from "../membership/member-id.js";
import type { MemberInfo } from "../membership/members-table.js";
import type { AlarmRequest } from "../mvcc/mod.js";
import type { DialTls } from "../transport/tls-credentials.js";
import { type LocalHash, type PeerHash, peerHashes } from "./initial-corrupt-check.js";

/** etcd's pb.AlarmRequest_ACTIVATE and pb.AlarmType_CORRUPT. */
const ACTIVATE = 1;
const CORRUPT = 2;

/** Why the cluster's data differs (empty: no evidence), by etcd 3.4's checkHashKV rules. Pure. */
export function corruptionEvidence(
  first: LocalHash,
  second: LocalHash,
  peers: readonly PeerHash[],
): string[] {
  const evidence: string[] = [];
  if (
    first.hash !== second.hash &&
    first.revision === second.revision &&
    first.compactRevision === second.compactRevision
  ) {
    evidence.push(
      `the leader's own hash changed at revision ${first.revision}: ${first.hash} then ${second.hash}`,
    );
  }
  for (const peer of peers) {
    if ("error" in peer) continue;
    const id = formatId(peer.id);
    if (peer.revision > second.revision) {
      evidence.push(`member ${id} is at revision ${peer.revision}, past the leader's ${second.revision}`);
    }
    if (peer.compactRevision > second.compactRevision) {
      evidence.push(
        `member ${id} compacted at ${peer.compactRevision}, past the leader's ${second.compactRevision}`,
      );
    }
    if (peer.compactRevision === first.compactRevision && peer.hash !== first.hash) {
      evidence.push(
        `member ${id} has hash ${peer.hash} at revision ${first.revision}, the leader ${first.hash}`,
      );
    }
  }
  return evidence;
}

/** What the check asks of the member. */
export interface CorruptCheckHost {
  readonly id: bigint;
  readonly clusterId: bigint;
  readonly isLeader: boolean;
  hashKV(revision: number): Promise<{ hash: number; hashRevision: number; compactRevision: number }>;
  members(): MemberInfo[];
  linearizableRead(): Promise<void>;
  alarm(request: AlarmRequest): Promise<unknown>;
}

export class PeriodicCorruptCheck {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly host: CorruptCheckHost,
    private readonly intervalMs: number,
    /** Each peer's answer, and the linearizable read, within this (etcd's ReqTimeout). */
    private readonly timeoutMs: number,
    private readonly dial: DialTls,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.logger.info(
      { "local-member-id": formatId(this.host.id), interval: `${this.intervalMs}ms` },
      "enabled corruption checking",
    );
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = (this.host.isLeader ? this.check() : Promise.resolve())
        .then(
          (evidence) => {
            if (evidence !== undefined && evidence.length > 0) this.raise(evidence);
          },
          (err: unknown) => this.logger.warn({ error: String(err) }, "failed to check hash KV"),
        )
        .finally(() => this.schedule());
    }, this.intervalMs);
  }

  /** One comparison; the evidence of corruption it found (empty when none). */
  async check(): Promise<string[]> {
    const first = asLocal(await this.host.hashKV(0));
    const peers = this.host.members().filter((m) => m.id !== this.host.id);
    const answers = await peerHashes(this.host, peers, first.revision, this.timeoutMs, this.dial);
    for (const a of answers) {
      if ("error" in a) {
        this.logger.warn(
          { "remote-peer-id": formatId(a.id), revision: first.revision, error: a.error },
          "failed hash kv request",
        );
      }
    }
    await withTimeout(this.host.linearizableRead(), this.timeoutMs, "linearizable read");
    const second = asLocal(await this.host.hashKV(0));
    const evidence = corruptionEvidence(first, second, answers);
    this.logger.info(
      { "number-of-peers-checked": answers.filter((a) => !("error" in a)).length },
      "finished peer corruption check",
    );
    return evidence;
  }

  private raise(evidence: string[]): void {
    for (const e of evidence) this.logger.warn({ evidence: e }, "found hash mismatch");
    this.host
      .alarm({ action: ACTIVATE, memberID: 0n, alarm: CORRUPT })
      .catch((err: unknown) => this.logger.warn({ error: String(err) }, "failed to raise the CORRUPT alarm"));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    await this.running;
  }
}

function asLocal(h: { hash: number; hashRevision: number; compactRevision: number }): LocalHash {
  return { hash: h.hash, revision: h.hashRevision, compactRevision: h.compactRevision };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
