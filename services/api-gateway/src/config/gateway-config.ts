// Gateway configuration from flags and ETCD_GATEWAY_* environment variables (flags win),
// in etcd's flag style: --endpoints=a,b or --endpoints a,b.

import { availableParallelism } from "node:os";
import type { TlsFiles } from "@etcd-ts/api";
import { natsUrlProblem } from "@etcd-ts/events";
import { DEFAULT_RANGE_CACHE_OPTIONS } from "../cache/range-cache.js";

export interface GatewayConfig {
  /** Member addresses (host:port) to start from; the rest is learnt from MemberList. */
  endpoints: string[];
  /** gRPC listen address. */
  listenAddr: string;
  /** JSON gateway and /metrics listen address. */
  jsonListenAddr: string;
  refreshIntervalMs: number;
  /**
   * The members' election timeout (etcd's --election-timeout, ms): a client stream that asked
   * for a leader (`hasleader`) ends after three of them in which no member knew one.
   */
  electionTimeoutMs: number;
  /** How long a keep-alive answer is reused for other requests on the same lease. */
  keepAliveReuseMs: number;
  /**
   * On SIGTERM, how long to keep serving with /readyz answering 503 before draining: a balancer
   * that checks /readyz stops sending new connections before the listener closes.
   */
  shutdownDelayMs: number;
  /** Serializable Range answers the watch-fed cache holds; 0 turns the cache off. */
  serializableCacheEntries: number;
  /** services/auth replicas (host:port) that answer Authenticate; empty: the members do. */
  authEndpoints: string[];
  /**
   * With auth on, the Range cache's own watch authenticates as this user (name and password;
   * it must read every key: root). Undefined: with auth on, the cache is off.
   */
  rangeCacheUser: { name: string; password: string } | undefined;
  /** nats:// URLs for control-plane events (re-route at once on a leader change); empty: none. */
  natsUrl: string;
  logLevel: string;
  /** Gateway processes sharing the ports (node:cluster); 1: this process serves alone. */
  workers: number;
  /** TLS to clients on both ports (etcd grpc-proxy's --cert-file, --key-file, --trusted-ca-file, --client-cert-auth). */
  serverTls: TlsFiles | undefined;
  /** TLS to members (etcd grpc-proxy's --cacert, --cert, --key): file paths. */
  upstreamTls: { cacert: string; cert: string; key: string } | undefined;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Raw flag values by name; the TLS ones are assembled into GatewayConfig's two TLS fields. */
type RawKey =
  | Exclude<keyof GatewayConfig, "serverTls" | "upstreamTls">
  | "certFile"
  | "keyFile"
  | "trustedCaFile"
  | "clientCertAuth"
  | "clientCrlFile"
  | "cacert"
  | "cert"
  | "key";

const FLAGS: Record<string, { env: string; key: RawKey; bool?: boolean }> = {
  endpoints: { env: "ETCD_GATEWAY_ENDPOINTS", key: "endpoints" },
  "listen-addr": { env: "ETCD_GATEWAY_LISTEN_ADDR", key: "listenAddr" },
  "json-listen-addr": { env: "ETCD_GATEWAY_JSON_LISTEN_ADDR", key: "jsonListenAddr" },
  "refresh-interval-ms": { env: "ETCD_GATEWAY_REFRESH_INTERVAL_MS", key: "refreshIntervalMs" },
  "election-timeout": { env: "ETCD_GATEWAY_ELECTION_TIMEOUT", key: "electionTimeoutMs" },
  "keepalive-reuse-ms": { env: "ETCD_GATEWAY_KEEPALIVE_REUSE_MS", key: "keepAliveReuseMs" },
  "shutdown-delay-ms": { env: "ETCD_GATEWAY_SHUTDOWN_DELAY_MS", key: "shutdownDelayMs" },
  "serializable-cache-entries": {
    env: "ETCD_GATEWAY_SERIALIZABLE_CACHE_ENTRIES",
    key: "serializableCacheEntries",
  },
  "auth-endpoints": { env: "ETCD_GATEWAY_AUTH_ENDPOINTS", key: "authEndpoints" },
  "range-cache-user": { env: "ETCD_GATEWAY_RANGE_CACHE_USER", key: "rangeCacheUser" },
  "nats-url": { env: "ETCD_GATEWAY_NATS_URL", key: "natsUrl" },
  "log-level": { env: "ETCD_GATEWAY_LOG_LEVEL", key: "logLevel" },
  workers: { env: "ETCD_GATEWAY_WORKERS", key: "workers" },
  "cert-file": { env: "ETCD_GATEWAY_CERT_FILE", key: "certFile" },
  "key-file": { env: "ETCD_GATEWAY_KEY_FILE", key: "keyFile" },
  "trusted-ca-file": { env: "ETCD_GATEWAY_TRUSTED_CA_FILE", key: "trustedCaFile" },
  "client-cert-auth": { env: "ETCD_GATEWAY_CLIENT_CERT_AUTH", key: "clientCertAuth", bool: true },
  "client-crl-file": { env: "ETCD_GATEWAY_CLIENT_CRL_FILE", key: "clientCrlFile" },
  cacert: { env: "ETCD_GATEWAY_CACERT", key: "cacert" },
  cert: { env: "ETCD_GATEWAY_CERT", key: "cert" },
  key: { env: "ETCD_GATEWAY_KEY", key: "key" },
};

export const USAGE = `Usage: etcd-ts-gateway --endpoints=127.0.0.1:2379,... [options]

  --endpoints            comma-separated member client URLs or host:port   (ETCD_GATEWAY_ENDPOINTS)
  --listen-addr          gRPC address, default 127.0.0.1:2379             (ETCD_GATEWAY_LISTEN_ADDR)
  --json-listen-addr     JSON gateway + /metrics, default 127.0.0.1:2378  (ETCD_GATEWAY_JSON_LISTEN_ADDR)
  --refresh-interval-ms  member/leader probe period, default 2000         (ETCD_GATEWAY_REFRESH_INTERVAL_MS)
  --election-timeout     the members' election timeout in ms (etcd's flag): client streams with
                         \`hasleader\` end after three without a leader, default 1000
                                                                   (ETCD_GATEWAY_ELECTION_TIMEOUT)
  --keepalive-reuse-ms   keep-alive answer reuse window, default 0 (off)  (ETCD_GATEWAY_KEEPALIVE_REUSE_MS)
  --shutdown-delay-ms    on SIGTERM, serve this long with /readyz at 503 before draining (for a
                         balancer that checks /readyz), default 0      (ETCD_GATEWAY_SHUTDOWN_DELAY_MS)
  --serializable-cache-entries  watch-fed cache of serializable Range answers,
                         entries, default 10000, 0 = off  (ETCD_GATEWAY_SERIALIZABLE_CACHE_ENTRIES)
  --auth-endpoints       services/auth gRPC addresses, comma-separated; Authenticate goes there
                         (dialled as members are: TLS with --cacert/--cert/--key)
                         (default: none, the members answer it)          (ETCD_GATEWAY_AUTH_ENDPOINTS)
  --range-cache-user     name:password the Range cache's watch authenticates as while auth is on
                         (must read every key: root); default none: cache off under auth
                         (prefer the environment variable: flags show in ps)
                                                                   (ETCD_GATEWAY_RANGE_CACHE_USER)
  --nats-url             nats://host:port: follow leader announcements, default none
                                                                   (ETCD_GATEWAY_NATS_URL)
  --log-level            pino level, default info                         (ETCD_GATEWAY_LOG_LEVEL)
  --workers              gateway processes sharing the ports, one core each; "auto": one per
                         core, default 1                                  (ETCD_GATEWAY_WORKERS)

  TLS to clients, on both ports (as etcd grpc-proxy):
  --cert-file, --key-file  serve TLS with this certificate       (ETCD_GATEWAY_CERT_FILE, _KEY_FILE)
  --trusted-ca-file      require client certificates from this CA (ETCD_GATEWAY_TRUSTED_CA_FILE)
  --client-cert-auth     require client certificates             (ETCD_GATEWAY_CLIENT_CERT_AUTH)
  --client-crl-file      refuse client certificates this CRL revokes (ETCD_GATEWAY_CLIENT_CRL_FILE)
  TLS to members (as etcd grpc-proxy):
  --cacert               verify members against this CA; dial https  (ETCD_GATEWAY_CACERT)
  --cert, --key          client certificate for members              (ETCD_GATEWAY_CERT, _KEY)
`;

export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv): GatewayConfig {
  const raw = new Map<RawKey, string>();
  for (const [, spec] of Object.entries(FLAGS)) {
    const v = env[spec.env];
    if (v !== undefined && v !== "") raw.set(spec.key, v);
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("--")) throw new ConfigError(`unexpected argument ${JSON.stringify(arg)}`);
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const spec = FLAGS[name];
    if (spec === undefined) throw new ConfigError(`unknown flag --${name}`);
    let value: string | undefined;
    if (eq !== -1) value = arg.slice(eq + 1);
    else if (spec.bool) value = "true";
    else value = argv[++i];
    if (value === undefined) throw new ConfigError(`--${name} needs a value`);
    raw.set(spec.key, value);
  }

  const upstreamTls = upstreamTlsOf(raw);
  const endpoints = (raw.get("endpoints") ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((e) => parseEndpoint(e, upstreamTls !== undefined));
  if (endpoints.length === 0) throw new ConfigError("--endpoints is required");
  return {
    endpoints,
    listenAddr: parseListenAddr(raw.get("listenAddr") ?? "127.0.0.1:2379", "listen-addr"),
    jsonListenAddr: parseListenAddr(raw.get("jsonListenAddr") ?? "127.0.0.1:2378", "json-listen-addr"),
    refreshIntervalMs: parsePositiveInt(raw.get("refreshIntervalMs") ?? "2000", "refresh-interval-ms"),
    electionTimeoutMs: parsePositiveInt(raw.get("electionTimeoutMs") ?? "1000", "election-timeout"),
    keepAliveReuseMs: parseNonNegativeInt(raw.get("keepAliveReuseMs") ?? "0", "keepalive-reuse-ms"),
    shutdownDelayMs: parseNonNegativeInt(raw.get("shutdownDelayMs") ?? "0", "shutdown-delay-ms"),
    serializableCacheEntries: parseNonNegativeInt(
      raw.get("serializableCacheEntries") ?? String(DEFAULT_RANGE_CACHE_OPTIONS.maxEntries),
      "serializable-cache-entries",
    ),
    authEndpoints: (raw.get("authEndpoints") ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "")
      // Dialled as members are: over TLS with --cacert/--cert/--key when those are given.
      .map((s) => parseEndpoint(s, upstreamTls !== undefined)),
    rangeCacheUser: parseUser(raw.get("rangeCacheUser")),
    natsUrl: parseNatsUrl(raw.get("natsUrl") ?? ""),
    logLevel: raw.get("logLevel") ?? "info",
    workers: parseWorkers(raw.get("workers") ?? "1"),
    serverTls: serverTlsOf(raw),
    upstreamTls,
  };
}

function serverTlsOf(raw: Map<RawKey, string>): TlsFiles | undefined {
  const certFile = raw.get("certFile") ?? "";
  const keyFile = raw.get("keyFile") ?? "";
  const clientCertAuth = parseBool(raw.get("clientCertAuth") ?? "false", "client-cert-auth");
  const trustedCaFile = raw.get("trustedCaFile") ?? "";
  if (certFile === "" && keyFile === "") {
    if (clientCertAuth || trustedCaFile !== "") {
      throw new ConfigError("--client-cert-auth and --trusted-ca-file need --cert-file and --key-file");
    }
    return undefined;
  }
  if (certFile === "" || keyFile === "")
    throw new ConfigError("--cert-file and --key-file must be given together");
  return { certFile, keyFile, trustedCaFile, clientCertAuth, crlFile: raw.get("clientCrlFile") ?? "" };
}

function upstreamTlsOf(raw: Map<RawKey, string>): GatewayConfig["upstreamTls"] {
  const cacert = raw.get("cacert") ?? "";
  const cert = raw.get("cert") ?? "";
  const key = raw.get("key") ?? "";
  if (cacert === "" && cert === "" && key === "") return undefined;
  if ((cert === "") !== (key === "")) throw new ConfigError("--cert and --key must be given together");
  return { cacert, cert, key };
}

function parseWorkers(value: string): number {
  if (value === "auto") return availableParallelism();
  const n = parsePositiveInt(value, "workers");
  if (n > 256) throw new ConfigError("--workers must be at most 256");
  return n;
}

function parseBool(value: string, flag: string): boolean {
  if (value === "true" || value === "1") return true;
  if (value === "false" || value === "0") return false;
  throw new ConfigError(`--${flag} must be true or false`);
}

/** `secure`: members are dialled over TLS (--cacert/--cert), so https:// endpoints are taken. */
function parseEndpoint(value: string, secure: boolean): string {
  if (value.startsWith("https://") && !secure) {
    throw new ConfigError(`https endpoint ${value} needs --cacert (TLS to members)`);
  }
  if (value.startsWith("http://") && secure) {
    throw new ConfigError(`http endpoint ${value} with --cacert: members are dialled over TLS`);
  }
  const stripped = value.replace(/^https?:\/\//, "").replace(/\/$/, "");
  if (!/^[^:/\s]+:\d{1,5}$/.test(stripped) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(stripped)) {
    throw new ConfigError(`endpoint must be host:port or http://host:port, got ${JSON.stringify(value)}`);
  }
  return stripped;
}

/** etcdctl's --user form, name:password (the password may hold colons). */
function parseUser(value: string | undefined): GatewayConfig["rangeCacheUser"] {
  if (value === undefined || value === "") return undefined;
  const colon = value.indexOf(":");
  if (colon <= 0) throw new ConfigError("--range-cache-user must be name:password");
  return { name: value.slice(0, colon), password: value.slice(colon + 1) };
}

function parseNatsUrl(value: string): string {
  const problem = natsUrlProblem("nats-url", value);
  if (problem !== undefined) throw new ConfigError(problem);
  return value;
}

function parseListenAddr(value: string, flag: string): string {
  const stripped = value.replace(/^http:\/\//, "");
  const port = Number(stripped.slice(stripped.lastIndexOf(":") + 1));
  if (!stripped.includes(":") || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`--${flag} must be host:port, got ${JSON.stringify(value)}`);
  }
  return stripped;
}

function parsePositiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new ConfigError(`--${flag} must be a positive integer`);
  return n;
}

function parseNonNegativeInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new ConfigError(`--${flag} must be a non-negative integer`);
  return n;
}

/** "127.0.0.1:2379" -> { host, port } for listeners. */
export function splitHostPort(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(":");
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(addr.slice(i + 1)) };
}
