// A member is configured like an etcd member: the same flag names, the same ETCD_* environment
// variables, the same defaults (etcd 3.4, embed/config.go), so scripts written for etcd start it
// unchanged. Parsing follows Go's `flag` package, which etcd uses: `-f v`, `--f v`, `--f=v`, and
// booleans only as `--f` or `--f=false`. `--config-file` reads etcd's YAML instead, and then,
// as in etcd, every other flag and ETCD_* variable is ignored.

import { readFileSync } from "node:fs";
import { CipherSuiteError, opensslCiphers, type TlsFiles } from "@etcd-ts/api";
import { natsUrlProblem } from "@etcd-ts/events";
import { parse as parseYaml } from "yaml";

export type FlagKind = "string" | "int" | "bool" | "urls" | "duration";

interface FlagSpec {
  kind: FlagKind;
  default: string;
  /** Accepted for compatibility; using it with a non-default value is refused until it is implemented. */
  unsupported?: boolean;
  /** Why a value other than the default is refused, when it will stay refused. */
  refusal?: string;
}

const MIB = 1024 * 1024;

const DISCOVERY_REFUSAL =
  "bootstrapping through a discovery service or DNS SRV records is not supported; list the members with --initial-cluster";

export const FLAGS = {
  name: { kind: "string", default: "default" },
  "data-dir": { kind: "string", default: "" },
  "wal-dir": { kind: "string", default: "" },
  "listen-client-urls": { kind: "urls", default: "http://localhost:2379" },
  "advertise-client-urls": { kind: "urls", default: "http://localhost:2379" },
  "listen-peer-urls": { kind: "urls", default: "http://localhost:2380" },
  "initial-advertise-peer-urls": { kind: "urls", default: "http://localhost:2380" },
  "listen-metrics-urls": { kind: "urls", default: "" },
  "initial-cluster": { kind: "string", default: "" },
  "initial-cluster-state": { kind: "string", default: "new" },
  "initial-cluster-token": { kind: "string", default: "etcd-cluster" },
  "heartbeat-interval": { kind: "int", default: "100" },
  "election-timeout": { kind: "int", default: "1000" },
  "quota-backend-bytes": { kind: "int", default: "0" },
  "snapshot-count": { kind: "int", default: "100000" },
  "experimental-snapshot-catchup-entries": { kind: "int", default: "5000" },
  "max-txn-ops": { kind: "int", default: "128" },
  "max-request-bytes": { kind: "int", default: String(1.5 * MIB) },
  "max-concurrent-streams": { kind: "int", default: "4294967295" },
  "max-learners": { kind: "int", default: "1" },
  "strict-reconfig-check": { kind: "bool", default: "true" },
  "force-new-cluster": { kind: "bool", default: "false" },
  "enable-v2": { kind: "bool", default: "false" },
  "auto-compaction-retention": { kind: "string", default: "0" },
  "auto-compaction-mode": { kind: "string", default: "periodic" },
  "auth-token": { kind: "string", default: "simple" },
  "auth-token-ttl": { kind: "int", default: "300" },
  "bcrypt-cost": { kind: "int", default: "10" },
  // On by default here (etcd: off), with a 5 s interval (etcd 3.5's flag; its default is 5m):
  // a lease's remaining TTL survives leader changes and restarts whatever its TTL.
  "experimental-enable-lease-checkpoint": { kind: "bool", default: "true" },
  "experimental-lease-checkpoint-interval": { kind: "duration", default: "5s" },
  // Ours (etcd issue 15107): the leader promotes a learner once it has caught up.
  "experimental-learner-auto-promote": { kind: "bool", default: "false" },
  "experimental-initial-corrupt-check": { kind: "bool", default: "false" },
  "experimental-watch-progress-notify-interval": { kind: "duration", default: "10m0s" },
  // etcd 3.4 defaults to false, 3.5 to true; Raft here always had pre-vote, so 3.5's default.
  "pre-vote": { kind: "bool", default: "true" },
  "max-snapshots": { kind: "int", default: "5" },
  "max-wals": { kind: "int", default: "5" },
  // Go's profiler does not exist here; accepted (etcd's sample config turns it on) with a warning.
  "enable-pprof": { kind: "bool", default: "false" },
  // etcd's flag.Value defaults ("*"); an empty value in a config file also means the default.
  cors: { kind: "string", default: "*" },
  discovery: { kind: "string", default: "", unsupported: true, refusal: DISCOVERY_REFUSAL },
  "discovery-fallback": { kind: "string", default: "proxy" },
  "discovery-proxy": { kind: "string", default: "", unsupported: true, refusal: DISCOVERY_REFUSAL },
  "discovery-srv": { kind: "string", default: "", unsupported: true, refusal: DISCOVERY_REFUSAL },
  proxy: {
    kind: "string",
    default: "off",
    unsupported: true,
    refusal:
      "etcd's v2 proxy is not part of this server (no v2 API); put the api-gateway in front of the members instead",
  },
  "proxy-failure-wait": { kind: "int", default: "5000" },
  "proxy-refresh-interval": { kind: "int", default: "30000" },
  "proxy-dial-timeout": { kind: "int", default: "1000" },
  "proxy-write-timeout": { kind: "int", default: "5000" },
  "proxy-read-timeout": { kind: "int", default: "0" },
  debug: { kind: "bool", default: "false" },
  "log-level": { kind: "string", default: "info" },
  logger: { kind: "string", default: "capnslog" },
  "log-outputs": { kind: "string", default: "default" },
  "config-file": { kind: "string", default: "" },
  "auto-tls": { kind: "bool", default: "false" },
  "peer-auto-tls": { kind: "bool", default: "false" },
  "cert-file": { kind: "string", default: "" },
  "key-file": { kind: "string", default: "" },
  "trusted-ca-file": { kind: "string", default: "" },
  "client-cert-auth": { kind: "bool", default: "false" },
  "client-crl-file": { kind: "string", default: "" },
  "client-cert-allowed-hostname": { kind: "string", default: "" },
  "peer-cert-file": { kind: "string", default: "" },
  "peer-key-file": { kind: "string", default: "" },
  "peer-trusted-ca-file": { kind: "string", default: "" },
  "peer-client-cert-auth": { kind: "bool", default: "false" },
  "peer-crl-file": { kind: "string", default: "" },
  "peer-cert-allowed-cn": { kind: "string", default: "" },
  "peer-cert-allowed-hostname": { kind: "string", default: "" },
  "cipher-suites": { kind: "string", default: "" },
  // Serve the JSON gateway on the client URLs (etcd's default).
  "enable-grpc-gateway": { kind: "bool", default: "true" },
  // Prints etcd's version lines and exits.
  version: { kind: "bool", default: "false" },
  // etcd 3.4's other flags: accepted at etcd's defaults (configs that spell them out start),
  // refused otherwise until they mean something here.
  "grpc-keepalive-min-time": { kind: "duration", default: "5s" },
  "grpc-keepalive-interval": { kind: "duration", default: "2h0m0s" },
  "grpc-keepalive-timeout": { kind: "duration", default: "20s" },
  "host-whitelist": { kind: "string", default: "*" },
  // etcd fast-forwards a multi-member start's first election once peers connect (true) or not
  // (false); a member here never does, i.e. false's behaviour, and true only delays the first
  // election by up to one timeout. A lone voter campaigns at once either way, as etcd's does.
  "initial-election-tick-advance": { kind: "bool", default: "true" },
  // bbolt's commit batching: accepted and logged (see memberConfig).
  "backend-batch-interval": { kind: "duration", default: "0" },
  "backend-batch-limit": { kind: "int", default: "0" },
  "experimental-backend-bbolt-freelist-type": { kind: "string", default: "", unsupported: true },
  "experimental-compaction-batch-limit": { kind: "int", default: "0", unsupported: true },
  "experimental-corrupt-check-time": { kind: "duration", default: "0" },
  "experimental-peer-skip-client-san-verification": { kind: "bool", default: "false", unsupported: true },
  "experimental-warning-apply-duration": { kind: "duration", default: "100ms" },
  // etcd 3.4.20+: remaining TTLs are always persisted here (3.6's behaviour), so it changes nothing.
  "experimental-enable-lease-checkpoint-persist": { kind: "bool", default: "false" },
  "experimental-enable-v2v3": { kind: "string", default: "", unsupported: true },
  "discovery-srv-name": { kind: "string", default: "", unsupported: true, refusal: DISCOVERY_REFUSAL },
  "log-package-levels": { kind: "string", default: "", unsupported: true },
  // etcd 3.4's deprecated spelling of --log-outputs (embed/config_logging.go's rules).
  "log-output": { kind: "string", default: "default" },
  metrics: { kind: "string", default: "basic" },
  "unsafe-no-fsync": { kind: "bool", default: "false" },
  // Not etcd's: where to publish control-plane events (leader, members, alarms, compactions).
  "nats-url": { kind: "string", default: "" },
} as const satisfies Record<string, FlagSpec>;

export type FlagName = keyof typeof FLAGS;

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Raw values as strings, after flags, then environment, then defaults. */
export type FlagValues = Record<FlagName, string>;

function isFlagName(name: string): name is FlagName {
  return Object.hasOwn(FLAGS, name);
}

function envName(flag: FlagName): string {
  return `ETCD_${flag.toUpperCase().replaceAll("-", "_")}`;
}

/**
 * Reads flags first, then ETCD_* variables for flags not given, then defaults. As in etcd, a
 * variable for a flag also given on the command line is ignored, and an unknown flag is an error.
 */
export function parseFlags(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  readConfigFile: (path: string) => string = (path) => readFileSync(path, "utf8"),
): FlagValues {
  const given = new Map<FlagName, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("-") || arg === "-" || arg === "--") {
      throw new ConfigError(`'${arg}' is not a valid flag`);
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq === -1 ? body : body.slice(0, eq);
    if (!isFlagName(name)) throw new ConfigError(`flag provided but not defined: -${name}`);
    const spec: FlagSpec = FLAGS[name];
    let value: string;
    if (eq !== -1) value = body.slice(eq + 1);
    else if (spec.kind === "bool") value = "true";
    else {
      if (i + 1 >= argv.length) throw new ConfigError(`flag needs an argument: -${name}`);
      value = argv[++i];
    }
    given.set(name, value);
  }
  const values = {} as FlagValues;
  const configFile = given.get("config-file") ?? env[envName("config-file")] ?? "";
  if (configFile !== "") {
    let text: string;
    try {
      text = readConfigFile(configFile);
    } catch (err) {
      throw new ConfigError(`--config-file: ${(err as Error).message}`);
    }
    const fromFile = configFileValues(text);
    for (const name of Object.keys(FLAGS) as FlagName[])
      values[name] = fromFile.get(name) ?? FLAGS[name].default;
    values["config-file"] = configFile;
    return values;
  }
  for (const name of Object.keys(FLAGS) as FlagName[]) {
    values[name] = given.get(name) ?? env[envName(name)] ?? FLAGS[name].default;
  }
  return values;
}

/** etcd's YAML nests the TLS flags; each section's keys map to these flags. */
const TLS_SECTIONS: Record<string, Record<string, string>> = {
  "client-transport-security": {
    "cert-file": "cert-file",
    "key-file": "key-file",
    "client-cert-auth": "client-cert-auth",
    "trusted-ca-file": "trusted-ca-file",
    "auto-tls": "auto-tls",
  },
  "peer-transport-security": {
    "cert-file": "peer-cert-file",
    "key-file": "peer-key-file",
    "client-cert-auth": "peer-client-cert-auth",
    "trusted-ca-file": "peer-trusted-ca-file",
    "auto-tls": "peer-auto-tls",
  },
};

/**
 * etcd's config file (embed.ConfigFromFile): YAML whose keys are the flag names. As in etcd, keys
 * it does not know are ignored, and an empty value means the default.
 */
export function configFileValues(text: string): Map<FlagName, string> {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`--config-file: ${(err as Error).message}`);
  }
  const out = new Map<FlagName, string>();
  if (doc === null || doc === undefined) return out;
  if (typeof doc !== "object" || Array.isArray(doc))
    throw new ConfigError("--config-file: expected a YAML mapping");
  const put = (key: string, value: unknown) => {
    if (!isFlagName(key) || value === null || value === undefined || value === "") return;
    // Lists (log-outputs: [stderr]) are the comma-joined flag value.
    out.set(key, Array.isArray(value) ? value.map(String).join(",") : String(value));
  };
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    const section = TLS_SECTIONS[key];
    if (section === undefined) {
      put(key, value);
      continue;
    }
    if (value === null || typeof value !== "object") continue;
    for (const [inner, v] of Object.entries(value as Record<string, unknown>)) {
      const flag = section[inner];
      if (flag !== undefined) put(flag, v);
    }
  }
  return out;
}

const DURATION_UNITS_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Go's time.ParseDuration ("10m0s", "1.5h", "300ms"), in milliseconds. */
export function parseGoDuration(flag: string, value: string): number {
  const text = value.trim();
  if (text === "0") return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;
  const sign = text.startsWith("-") ? -1 : 1;
  let i = text.startsWith("-") || text.startsWith("+") ? 1 : 0;
  let total = 0;
  if (i >= text.length) throw new ConfigError(`invalid duration "${value}" for --${flag}`);
  while (i < text.length) {
    re.lastIndex = i;
    const m = re.exec(text);
    if (m === null) throw new ConfigError(`invalid duration "${value}" for --${flag}`);
    total += Number(m[1]) * DURATION_UNITS_MS[m[2]!]!;
    i = re.lastIndex;
  }
  return sign * total;
}

export interface MemberConfig {
  name: string;
  dataDir: string;
  walDir: string;
  listenClientUrls: URL[];
  advertiseClientUrls: URL[];
  listenPeerUrls: URL[];
  initialAdvertisePeerUrls: URL[];
  listenMetricsUrls: URL[];
  /** Member name -> its peer URLs, in the order given. */
  initialCluster: Map<string, URL[]>;
  initialClusterState: "new" | "existing";
  initialClusterToken: string;
  heartbeatMs: number;
  electionMs: number;
  /** Bytes; etcd's 0 means the 2 GiB default. */
  quotaBackendBytes: number;
  snapshotCount: number;
  /** Snapshot files kept (etcd's --max-snapshots; 0: unlimited). */
  maxSnapshots: number;
  /** WAL files kept (etcd's --max-wals; 0: unlimited); only files wholly before the last snapshot go. */
  maxWals: number;
  /** Applies slower than this count in etcd_server_slow_apply_total (etcd's warnApplyDuration). */
  warningApplyDurationMs: number;
  /** etcd's --unsafe-no-fsync: no fsync anywhere; a crash of the machine may lose acknowledged writes. */
  unsafeNoFsync: boolean;
  /** Entries kept in the log after a snapshot, for slow followers (etcd 3.5's flag). */
  snapshotCatchUpEntries: number;
  maxTxnOps: number;
  maxRequestBytes: number;
  maxConcurrentStreams: number;
  maxLearners: number;
  strictReconfigCheck: boolean;
  leaseCheckpoint: boolean;
  /** --experimental-lease-checkpoint-interval: how often each lease's remaining TTL is recorded. */
  leaseCheckpointIntervalMs: number;
  /** --experimental-learner-auto-promote (ours): the leader promotes caught-up learners. */
  learnerAutoPromote: boolean;
  /** Serve the JSON gateway on the client URLs (--enable-grpc-gateway). */
  grpcGateway: boolean;
  /** --cors: origins given the CORS headers on the client port's HTTP/1.1 ("*": all). */
  corsOrigins: string[];
  /** --host-whitelist: Host names a plaintext HTTP/1.1 request may name ("*": all). */
  hostWhitelist: string[];
  /** --grpc-keepalive-min-time: clients pinging more often get GOAWAY ENHANCE_YOUR_CALM. */
  grpcKeepaliveMinTimeMs: number;
  /** --grpc-keepalive-interval: an idle client connection is pinged this often; 0 never. */
  grpcKeepaliveIntervalMs: number;
  /** --grpc-keepalive-timeout: a ping unanswered this long closes the connection. */
  grpcKeepaliveTimeoutMs: number;
  /** --metrics extensive: grpc_server_handling_seconds as well (etcd's go-grpc-prometheus histogram). */
  extensiveMetrics: boolean;
  /** --version: print the version and exit. */
  printVersion: boolean;
  /** Restart as a one-member cluster keeping the data (etcd's --force-new-cluster). */
  forceNewCluster: boolean;
  /** Compare HashKV with the peers before starting; refuse to start on a mismatch. */
  initialCorruptCheck: boolean;
  /** --experimental-corrupt-check-time: how often the leader compares HashKV with its peers; 0 never. */
  corruptCheckIntervalMs: number;
  /** etcd's --auth-token: "simple", or "jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...". */
  authToken: string;
  /** Seconds a simple token lives after its last use. */
  authTokenTtl: number;
  /** bcrypt cost of password hashes (etcd's --bcrypt-cost). */
  bcryptCost: number;
  logLevel: string;
  /** zap or capnslog (etcd 3.4's two loggers): the shape of the log lines. */
  logger: "zap" | "capnslog";
  /** stderr, stdout, or file paths ("default" is stderr). */
  logOutputs: string[];
  preVote: boolean;
  /** How often progress_notify watchers hear the revision when idle; 0 never. */
  watchProgressNotifyIntervalMs: number;
  /** nats://host:port for control-plane events; empty: none. */
  natsUrl: string;
  /** Warnings about accepted flags that change nothing here, for the log. */
  warnings: string[];
  /** Serve https client URLs with a self-signed certificate (ignored when certificate files are given). */
  autoTls: boolean;
  /** Serve and dial https peer URLs with a self-signed certificate, unverified (idem). */
  peerAutoTls: boolean;
  /** --cert-file and the client side's other TLS flags; undefined without a certificate. */
  clientTls: TlsFiles | undefined;
  /** --peer-cert-file and the peer side's other TLS flags; undefined without a certificate. */
  peerTls: TlsFiles | undefined;
  /** --client-cert-auth: a client certificate's CN is the caller when the request has no token. */
  clientCertAuth: boolean;
  /** --cipher-suites, Go's names (checked), for both sides. */
  cipherSuites: string[];
}

export const DEFAULT_QUOTA_BACKEND_BYTES = 2 * 1024 * MIB;
/** etcd refuses quotas above this (embed: "quota-backend-bytes exceeds maximum"). */
export const MAX_QUOTA_BACKEND_BYTES = 8 * 1024 * MIB;

function parseUrls(flag: FlagName, value: string): URL[] {
  if (value === "") return [];
  return value.split(",").map((raw) => {
    let url: URL;
    try {
      url = new URL(raw.trim());
    } catch {
      throw new ConfigError(`--${flag}: invalid URL "${raw}"`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:" && url.protocol !== "unix:") {
      throw new ConfigError(`--${flag}: URL scheme must be http, https or unix: "${raw}"`);
    }
    return url;
  });
}

function parseInt64(flag: FlagName, value: string): number {
  if (!/^-?\d+$/.test(value.trim())) throw new ConfigError(`--${flag}: invalid integer "${value}"`);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new ConfigError(`--${flag}: integer out of range "${value}"`);
  return n;
}

function parseNonNegative(flag: FlagName, value: string): number {
  const n = parseInt64(flag, value);
  // etcd's flag is a uint: Go's flag package refuses a negative value.
  if (n < 0) throw new ConfigError(`invalid value "${value}" for flag -${flag}: parse error`);
  return n;
}

function parseBool(flag: FlagName, value: string): boolean {
  // Go's strconv.ParseBool.
  if (["1", "t", "T", "true", "TRUE", "True"].includes(value)) return true;
  if (["0", "f", "F", "false", "FALSE", "False"].includes(value)) return false;
  throw new ConfigError(`--${flag}: invalid boolean "${value}"`);
}

/** Go's UniqueStringsValue: split on commas, duplicates dropped, order kept. */
function uniqueStrings(value: string): string[] {
  return [...new Set(value.split(",").map((v) => v.trim()))];
}

/**
 * etcd 3.4's setupLogging for its two spellings: --log-output (deprecated) wins only when it
 * lists more outputs than --log-outputs; listing several in both, or the same non-default list
 * in both, is an error; otherwise --log-outputs is used and a non-default --log-output warned of.
 */
function chooseLogOutputs(deprecated: string, current: string, warnings: string[]): string[] {
  const old = uniqueStrings(deprecated);
  const outputs = uniqueStrings(current);
  const quoted = (list: string[]) => `[${list.map((o) => JSON.stringify(o)).join(" ")}]`;
  if (old.length > outputs.length) {
    warnings.push("'--log-output' flag has been deprecated! Please use '--log-outputs'!");
    return old;
  }
  if (old.length === outputs.length) {
    if (old.length > 1)
      throw new ConfigError("both '--log-output' and '--log-outputs' are set; only set '--log-outputs'");
    if (old[0] === outputs[0] && old[0] !== "default") {
      throw new ConfigError(
        `'--log-output=${quoted(old)}' and '--log-outputs=${quoted(outputs)}' are incompatible; only set --log-outputs`,
      );
    }
    if (old[0] !== "default") {
      warnings.push(
        `[WARNING] Deprecated '--log-output' flag is set to ${quoted(old)}; please use '--log-outputs' flag`,
      );
    }
  }
  return outputs;
}

/** `a=http://h:1,a=http://h:2,b=http://h:3` -> {a: [h:1, h:2], b: [h:3]} */
export function parseInitialCluster(value: string): Map<string, URL[]> {
  const cluster = new Map<string, URL[]>();
  if (value.trim() === "") return cluster;
  for (const part of value.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new ConfigError(`--initial-cluster: expected name=url, got "${part}"`);
    const name = part.slice(0, eq).trim();
    const urls = cluster.get(name) ?? [];
    urls.push(...parseUrls("initial-cluster", part.slice(eq + 1)));
    cluster.set(name, urls);
  }
  return cluster;
}

/** Whether two spellings of a flag's value mean the same ("2h" and "2h0m0s", "1" and "true"). */
function sameFlagValue(name: FlagName, spec: FlagSpec, a: string, b: string): boolean {
  if (spec.kind === "bool") return parseBool(name, a) === parseBool(name, b);
  if (spec.kind === "duration") return parseGoDuration(name, a) === parseGoDuration(name, b);
  return a === b;
}

export function memberConfig(values: FlagValues): MemberConfig {
  for (const name of Object.keys(FLAGS) as FlagName[]) {
    const spec: FlagSpec = FLAGS[name];
    if (spec.kind === "bool") parseBool(name, values[name]);
    if (spec.kind === "duration") parseGoDuration(name, values[name]);
    if (spec.unsupported && !sameFlagValue(name, spec, values[name], spec.default)) {
      throw new ConfigError(
        `--${name} ${spec.refusal ? `is refused: ${spec.refusal}` : "is not supported yet"}`,
      );
    }
  }
  const name = values.name;
  const initialAdvertisePeerUrls = parseUrls(
    "initial-advertise-peer-urls",
    values["initial-advertise-peer-urls"],
  );
  // etcd: with no --initial-cluster, the cluster is this member alone.
  const initialCluster =
    values["initial-cluster"] === ""
      ? new Map([[name, initialAdvertisePeerUrls]])
      : parseInitialCluster(values["initial-cluster"]);
  const state = values["initial-cluster-state"];
  if (state !== "new" && state !== "existing") {
    throw new ConfigError(`--initial-cluster-state: must be "new" or "existing", got "${state}"`);
  }
  const heartbeatMs = parseInt64("heartbeat-interval", values["heartbeat-interval"]);
  const electionMs = parseInt64("election-timeout", values["election-timeout"]);
  if (heartbeatMs <= 0) throw new ConfigError("--heartbeat-interval must be positive");
  // etcd's check (embed.Config.Validate): election timeout must be at least 5x the heartbeat.
  if (5 * heartbeatMs > electionMs) {
    throw new ConfigError(
      `--election-timeout[${electionMs}ms] should be at least as 5 times as --heartbeat-interval[${heartbeatMs}ms]`,
    );
  }
  const quotaBackendBytes = parseInt64("quota-backend-bytes", values["quota-backend-bytes"]);
  if (quotaBackendBytes < 0 || quotaBackendBytes > MAX_QUOTA_BACKEND_BYTES) {
    throw new ConfigError(`--quota-backend-bytes must be between 0 and ${MAX_QUOTA_BACKEND_BYTES}`);
  }
  const dataDir = values["data-dir"] === "" ? `${name}.etcd` : values["data-dir"];
  const logger = values.logger;
  if (logger !== "zap" && logger !== "capnslog") {
    throw new ConfigError(`unknown logger option "${logger}"`);
  }
  const warnings: string[] = [];
  const logOutputs = chooseLogOutputs(values["log-output"], values["log-outputs"], warnings);
  if (logOutputs.length > 1 && logOutputs.includes("default")) {
    throw new ConfigError(`multi logoutput for "default" is not supported: [${logOutputs.join(" ")}]`);
  }
  if (
    parseBool(
      "experimental-enable-lease-checkpoint-persist",
      values["experimental-enable-lease-checkpoint-persist"],
    ) &&
    !parseBool("experimental-enable-lease-checkpoint", values["experimental-enable-lease-checkpoint"])
  ) {
    throw new ConfigError(
      "setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint",
    );
  }
  if (
    parseGoDuration("backend-batch-interval", values["backend-batch-interval"]) !== 0 ||
    parseInt64("backend-batch-limit", values["backend-batch-limit"]) !== 0
  ) {
    warnings.push(
      "--backend-batch-interval/--backend-batch-limit: each applied Raft batch is one RocksDB write here, made durable by the WAL; there is no backend transaction to batch",
    );
  }
  if (parseBool("enable-pprof", values["enable-pprof"])) {
    warnings.push("--enable-pprof: this server has no Go profiler; profile it with node --cpu-prof");
  }
  if (parseBool("unsafe-no-fsync", values["unsafe-no-fsync"])) {
    warnings.push(
      "--unsafe-no-fsync: nothing is fsynced; a machine crash or power loss can lose acknowledged writes",
    );
  }
  const debug = parseBool("debug", values.debug);
  return {
    name,
    dataDir,
    walDir: values["wal-dir"],
    listenClientUrls: parseUrls("listen-client-urls", values["listen-client-urls"]),
    advertiseClientUrls: parseUrls("advertise-client-urls", values["advertise-client-urls"]),
    listenPeerUrls: parseUrls("listen-peer-urls", values["listen-peer-urls"]),
    initialAdvertisePeerUrls,
    listenMetricsUrls: parseUrls("listen-metrics-urls", values["listen-metrics-urls"]),
    initialCluster,
    initialClusterState: state,
    initialClusterToken: values["initial-cluster-token"],
    heartbeatMs,
    electionMs,
    quotaBackendBytes: quotaBackendBytes === 0 ? DEFAULT_QUOTA_BACKEND_BYTES : quotaBackendBytes,
    snapshotCount: parseInt64("snapshot-count", values["snapshot-count"]),
    maxSnapshots: parseInt64("max-snapshots", values["max-snapshots"]),
    maxWals: parseNonNegative("max-wals", values["max-wals"]),
    warningApplyDurationMs: parseGoDuration(
      "experimental-warning-apply-duration",
      values["experimental-warning-apply-duration"],
    ),
    unsafeNoFsync: parseBool("unsafe-no-fsync", values["unsafe-no-fsync"]),
    snapshotCatchUpEntries: parseInt64(
      "experimental-snapshot-catchup-entries",
      values["experimental-snapshot-catchup-entries"],
    ),
    maxTxnOps: parseInt64("max-txn-ops", values["max-txn-ops"]),
    maxRequestBytes: parseInt64("max-request-bytes", values["max-request-bytes"]),
    maxConcurrentStreams: parseInt64("max-concurrent-streams", values["max-concurrent-streams"]),
    maxLearners: parseInt64("max-learners", values["max-learners"]),
    strictReconfigCheck: parseBool("strict-reconfig-check", values["strict-reconfig-check"]),
    leaseCheckpoint: parseBool(
      "experimental-enable-lease-checkpoint",
      values["experimental-enable-lease-checkpoint"],
    ),
    learnerAutoPromote: parseBool(
      "experimental-learner-auto-promote",
      values["experimental-learner-auto-promote"],
    ),
    leaseCheckpointIntervalMs: parseGoDuration(
      "experimental-lease-checkpoint-interval",
      values["experimental-lease-checkpoint-interval"],
    ),
    forceNewCluster: parseBool("force-new-cluster", values["force-new-cluster"]),
    grpcGateway: parseBool("enable-grpc-gateway", values["enable-grpc-gateway"]),
    corsOrigins: parseCors(values.cors),
    // etcd's UniqueStringsValue: split on commas, nothing trimmed.
    hostWhitelist: values["host-whitelist"].split(","),
    grpcKeepaliveMinTimeMs: parseGoDuration("grpc-keepalive-min-time", values["grpc-keepalive-min-time"]),
    grpcKeepaliveIntervalMs: parseGoDuration("grpc-keepalive-interval", values["grpc-keepalive-interval"]),
    grpcKeepaliveTimeoutMs: parseGoDuration("grpc-keepalive-timeout", values["grpc-keepalive-timeout"]),
    // etcd 3.4 checks nothing here: any value but "extensive" is basic.
    extensiveMetrics: values.metrics === "extensive",
    printVersion: parseBool("version", values.version),
    initialCorruptCheck: parseBool(
      "experimental-initial-corrupt-check",
      values["experimental-initial-corrupt-check"],
    ),
    corruptCheckIntervalMs: parseGoDuration(
      "experimental-corrupt-check-time",
      values["experimental-corrupt-check-time"],
    ),
    authToken: parseAuthToken(values["auth-token"]),
    authTokenTtl: parseInt64("auth-token-ttl", values["auth-token-ttl"]),
    bcryptCost: parseBcryptCost(values["bcrypt-cost"]),
    logLevel: debug ? "debug" : values["log-level"],
    logger,
    logOutputs: logOutputs.map((o) => (o === "default" ? "stderr" : o)),
    preVote: parseBool("pre-vote", values["pre-vote"]),
    watchProgressNotifyIntervalMs: parseGoDuration(
      "experimental-watch-progress-notify-interval",
      values["experimental-watch-progress-notify-interval"],
    ),
    warnings,
    natsUrl: parseNatsUrl(values["nats-url"]),
    autoTls: parseBool("auto-tls", values["auto-tls"]),
    peerAutoTls: parseBool("peer-auto-tls", values["peer-auto-tls"]),
    ...tlsConfig(values),
  };
}

/** etcd's TLSInfo for each side: empty (no TLS from files) unless a cert or key file is given. */
function tlsConfig(
  values: FlagValues,
): Pick<MemberConfig, "clientTls" | "peerTls" | "clientCertAuth" | "cipherSuites"> {
  const cipherSuites = values["cipher-suites"]
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  try {
    opensslCiphers(cipherSuites);
  } catch (err) {
    if (err instanceof CipherSuiteError) throw new ConfigError(err.message);
    throw err;
  }
  const clientCertAuth = parseBool("client-cert-auth", values["client-cert-auth"]);
  const side = (prefix: "" | "peer-", certAuth: boolean): TlsFiles | undefined => {
    const certFile = values[`${prefix}cert-file`];
    const keyFile = values[`${prefix}key-file`];
    if (certFile === "" && keyFile === "") return undefined;
    if (certFile === "" || keyFile === "") {
      throw new ConfigError(`--${prefix}cert-file and --${prefix}key-file must be given together`);
    }
    return {
      certFile,
      keyFile,
      trustedCaFile: values[`${prefix}trusted-ca-file`],
      clientCertAuth: certAuth,
      crlFile: prefix === "" ? values["client-crl-file"] : values["peer-crl-file"],
      cipherSuites,
      allowedCn: prefix === "" ? "" : values["peer-cert-allowed-cn"],
      allowedHostname:
        prefix === "" ? values["client-cert-allowed-hostname"] : values["peer-cert-allowed-hostname"],
    };
  };
  const peerTls = side("peer-", parseBool("peer-client-cert-auth", values["peer-client-cert-auth"]));
  if (peerTls?.allowedCn && peerTls.allowedHostname) {
    throw new ConfigError(
      `AllowedCN and AllowedHostname are mutually exclusive (cn="${peerTls.allowedCn}", hostname="${peerTls.allowedHostname}")`,
    );
  }
  return { clientTls: side("", clientCertAuth), peerTls, clientCertAuth, cipherSuites };
}

/**
 * etcd's --cors value (flags.UniqueURLsWithExceptions("*")): "*", or URLs with a scheme, an
 * explicit port and no path, as types.NewURLs checks them. Origins are compared as written.
 */
function parseCors(value: string): string[] {
  if (value === "*") return ["*"];
  const origins: string[] = [];
  for (const raw of value.split(",")) {
    const origin = raw.trim();
    const problem = corsOriginProblem(origin);
    if (problem !== undefined) throw new ConfigError(`invalid value "${value}" for flag -cors: ${problem}`);
    if (!origins.includes(origin)) origins.push(origin);
  }
  return origins;
}

function corsOriginProblem(origin: string): string | undefined {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/.exec(origin);
  const scheme = m?.[1];
  if (scheme !== "http" && scheme !== "https" && scheme !== "unix" && scheme !== "unixs") {
    return `URL scheme must be http, https, unix, or unixs: ${origin}`;
  }
  if (!/^(\[[^\]]*\]|[^:[\]]*):[^:]*$/.test(m![2]!)) {
    return `URL address does not have the form "host:port": ${origin}`;
  }
  if (m![3] !== "") return `URL must not contain a path: ${origin}`;
  return undefined;
}

function parseNatsUrl(value: string): string {
  const problem = natsUrlProblem("nats-url", value);
  if (problem !== undefined) throw new ConfigError(problem);
  return value;
}

/** etcd's --auth-token: "simple", or "jwt,..." (its options are read when the member opens). */
function parseAuthToken(value: string): string {
  const type = value.split(",")[0];
  if (type === "simple" || type === "jwt") return value;
  throw new Error(`invalid --auth-token ${JSON.stringify(value)}: token type must be simple or jwt`);
}

/** Go's bcrypt accepts costs 4..31 (etcd checks the same at start). */
function parseBcryptCost(value: string): number {
  const cost = Number(value);
  if (!Number.isInteger(cost) || cost < 4 || cost > 31) {
    throw new Error(`invalid --bcrypt-cost ${value}: must be between 4 and 31`);
  }
  return cost;
}
