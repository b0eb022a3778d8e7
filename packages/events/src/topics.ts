// The control plane's subjects and what each carries. Events are hints that let services react
// at once (a gateway re-routes on a leader change); every service still learns the truth by
// polling the members, so a lost, late or duplicated event costs time, never correctness.
// Payloads are JSON (low volume, readable with `nats sub`); IDs are lower-case hex without
// leading zeros, as etcdctl prints them; times are Unix milliseconds.

/** A subject and how to check what arrives on it (another process's bytes are untrusted). */
export interface Topic<T> {
  readonly subject: string;
  decode(value: unknown): T | undefined;
}

/** A Raft leader was elected; published by the new leader itself as it takes office. */
export interface LeaderElected {
  clusterId: string;
  leaderId: string;
  /** Raft term: a subscriber ignores an event older than the leader it knows. */
  term: number;
  name: string;
  clientUrls: string[];
  at: number;
}

export interface ClusterMember {
  id: string;
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

/** The membership after a change was applied (the whole list: a missed event loses nothing). */
export interface MembersChanged {
  clusterId: string;
  /** The member (the leader at apply time) that published it. */
  reporter: string;
  members: ClusterMember[];
  at: number;
}

/** The active alarms after an Alarm request was applied (etcd's AlarmType names). */
export interface AlarmsChanged {
  clusterId: string;
  reporter: string;
  alarms: { memberId: string; alarm: "NONE" | "NOSPACE" | "CORRUPT" }[];
  at: number;
}

/** A Compact request was applied: revisions below `revision` are gone. */
export interface Compacted {
  clusterId: string;
  reporter: string;
  revision: number;
  at: number;
}

/**
 * An auth entry changed the auth store (a user, role or permission; AuthEnable, AuthDisable):
 * tokens issued before `revision` are old, and what a user was found allowed to read before it
 * may no longer hold (the gateway's Range cache drops its permission memos).
 */
export interface AuthChanged {
  clusterId: string;
  reporter: string;
  /** The auth store's revision after the change. */
  revision: number;
  enabled: boolean;
  at: number;
}

/** What started a backup; "compaction": a compaction passed the last delta, so deltas cannot go on. */
export type BackupTrigger = "schedule" | "http" | "nats" | "compaction";
/** A full backup (a snapshot) or a delta (the changes since the last one). */
export type BackupKind = "full" | "delta";

export interface BackupStarted {
  trigger: BackupTrigger;
  /** Absent from older senders, which published full backups only. */
  kind?: BackupKind;
  at: number;
}

export interface BackupCompleted {
  trigger: BackupTrigger;
  /** Absent from older senders: "full". */
  kind?: BackupKind;
  /** A full backup's id; a delta's object name (`<base>.delta-<from>-<to>.jsonl`). */
  id: string;
  /** A delta's full backup. */
  base?: string;
  /**
   * The revision the backup restores to: a full backup's snapshot revision (read back from the
   * stored object), a delta's last revision. Absent from older senders.
   */
  revision?: number;
  /** A delta's first revision (revision + 1 for a delta of lease and auth state alone). */
  fromRevision?: number;
  size: number;
  sha256: string;
  /** The member the snapshot was pulled from. */
  source: string;
  seconds: number;
  /** Backups deleted by the retention policy. */
  removed: string[];
  /** How many tries the backup took (a failed member or store is retried); absent from older senders. */
  attempts?: number;
  at: number;
}

export interface BackupFailed {
  trigger: BackupTrigger;
  /** Absent from older senders: "full". */
  kind?: BackupKind;
  error: string;
  at: number;
}

/** `backup.now`'s request (empty today: room for options without a new subject). */
export type BackupNowRequest = Record<string, never>;

/** `backup.now`'s reply: the backup taken, or why none was. */
export type BackupNowReply = { ok: true; backup: BackupCompleted } | { ok: false; error: string };

/**
 * A signing key of the auth service was rotated. Defined, published by nobody yet: replicas and
 * gateways learn of keys from the members' replicated store.
 */
export interface AuthKeysRotated {
  /** `kid` of the key that now signs tokens. */
  keyId: string;
  /** Keys still accepted for verification, newest first. */
  validKeyIds: string[];
  at: number;
}

/**
 * A login an auth service replica decided (services/auth). The other replicas count its
 * failures against their own failed-login budgets (and its success clears the user's), so N
 * replicas behind round-robin gateways give a guesser one budget, not N.
 */
export interface LoginOutcome {
  /** The deciding replica (random per process): a replica skips its own events. */
  replica: string;
  user: string;
  /** The client address the budget is kept for (the gateway's x-forwarded-for, or the peer). */
  client: string;
  ok: boolean;
  at: number;
}

/** Matches every cluster in a subscription (`etcd.*.leader`). */
export const ANY_CLUSTER = "*";

const isString = (v: unknown): v is string => typeof v === "string";
const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;
const HEX_ID = /^[0-9a-f]{1,16}$/;
const isId = (v: unknown): v is string => isString(v) && HEX_ID.test(v);

function checked<T>(test: (v: Record<string, unknown>) => boolean): (value: unknown) => T | undefined {
  return (value) => (isObject(value) && test(value) ? (value as T) : undefined);
}

const isMember = (m: unknown): boolean =>
  isObject(m) &&
  isId(m.id) &&
  isString(m.name) &&
  isStrings(m.peerUrls) &&
  isStrings(m.clientUrls) &&
  typeof m.isLearner === "boolean";

const isKind = (v: unknown): boolean => v === undefined || v === "full" || v === "delta";
const isOptionalNumber = (v: unknown): boolean => v === undefined || isNumber(v);

const isBackupCompleted = (v: Record<string, unknown>): boolean =>
  isString(v.trigger) &&
  isKind(v.kind) &&
  isOptionalNumber(v.revision) &&
  isOptionalNumber(v.fromRevision) &&
  (v.base === undefined || isString(v.base)) &&
  isString(v.id) &&
  isNumber(v.size) &&
  isString(v.sha256) &&
  isString(v.source) &&
  isNumber(v.seconds) &&
  isStrings(v.removed) &&
  isNumber(v.at);

function clusterSubject(clusterId: string, event: string): string {
  if (clusterId !== ANY_CLUSTER && !HEX_ID.test(clusterId)) {
    throw new Error(`cluster ID must be lower-case hex, got ${JSON.stringify(clusterId)}`);
  }
  return `etcd.${clusterId}.${event}`;
}

/** Every subject of the control plane (README.md lists them for operators). */
export const topics = {
  leader: (clusterId: string): Topic<LeaderElected> => ({
    subject: clusterSubject(clusterId, "leader"),
    decode: checked((v) => isId(v.clusterId) && isId(v.leaderId) && isNumber(v.term) && isNumber(v.at)),
  }),
  members: (clusterId: string): Topic<MembersChanged> => ({
    subject: clusterSubject(clusterId, "members"),
    decode: checked(
      (v) => isId(v.clusterId) && isId(v.reporter) && Array.isArray(v.members) && v.members.every(isMember),
    ),
  }),
  alarm: (clusterId: string): Topic<AlarmsChanged> => ({
    subject: clusterSubject(clusterId, "alarm"),
    decode: checked(
      (v) =>
        isId(v.clusterId) &&
        Array.isArray(v.alarms) &&
        v.alarms.every((a) => isObject(a) && isId(a.memberId) && isString(a.alarm)),
    ),
  }),
  compaction: (clusterId: string): Topic<Compacted> => ({
    subject: clusterSubject(clusterId, "compaction"),
    decode: checked((v) => isId(v.clusterId) && isNumber(v.revision)),
  }),
  auth: (clusterId: string): Topic<AuthChanged> => ({
    subject: clusterSubject(clusterId, "auth"),
    decode: checked((v) => isId(v.clusterId) && isNumber(v.revision) && typeof v.enabled === "boolean"),
  }),
  backupStarted: {
    subject: "backup.started",
    decode: checked<BackupStarted>((v) => isString(v.trigger) && isKind(v.kind) && isNumber(v.at)),
  } satisfies Topic<BackupStarted>,
  backupCompleted: {
    subject: "backup.completed",
    decode: checked<BackupCompleted>(isBackupCompleted),
  } satisfies Topic<BackupCompleted>,
  backupFailed: {
    subject: "backup.failed",
    decode: checked<BackupFailed>(
      (v) => isString(v.trigger) && isKind(v.kind) && isString(v.error) && isNumber(v.at),
    ),
  } satisfies Topic<BackupFailed>,
  /** Request/reply: take a backup now; the reply comes once it is stored (or failed). */
  backupNow: {
    subject: "backup.now",
    decode: checked<BackupNowRequest>(() => true),
  } satisfies Topic<BackupNowRequest>,
  backupNowReply: {
    subject: "backup.now",
    decode: checked<BackupNowReply>((v) =>
      v.ok === true ? isObject(v.backup) && isBackupCompleted(v.backup) : v.ok === false && isString(v.error),
    ),
  } satisfies Topic<BackupNowReply>,
  loginOutcome: {
    subject: "auth.logins",
    decode: checked<LoginOutcome>(
      (v) =>
        isString(v.replica) &&
        isString(v.user) &&
        isString(v.client) &&
        typeof v.ok === "boolean" &&
        isNumber(v.at),
    ),
  } satisfies Topic<LoginOutcome>,
  authKeysRotated: {
    subject: "auth.keys.rotated",
    decode: checked<AuthKeysRotated>((v) => isString(v.keyId) && isStrings(v.validKeyIds) && isNumber(v.at)),
  } satisfies Topic<AuthKeysRotated>,
};

export function encodeEvent(payload: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(payload));
}

/**
 * The payload if it is well-formed JSON of the topic's shape, else undefined. An empty payload
 * reads as `{}`, so `nats request backup.now ''` works.
 */
export function decodeEvent<T>(topic: Topic<T>, data: Uint8Array): T | undefined {
  let value: unknown = {};
  if (data.byteLength > 0)
    try {
      value = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8"));
    } catch {
      return undefined;
    }
  return topic.decode(value);
}
