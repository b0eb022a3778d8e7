// services/auth's configuration from flags and ETCD_AUTH_* environment variables (flags win),
// in etcd's flag style: --endpoints=a,b or --endpoints a,b.

import { natsUrlProblem } from "@etcd-ts/events";

export interface AuthConfig {
  /** The members' peer URLs (their AuthBackend service). */
  endpoints: string[];
  /** gRPC (etcdserverpb.Auth/Authenticate) for the gateways. */
  listenAddr: string;
  /** HTTP: /.well-known/jwks.json, /health, /metrics. */
  httpListenAddr: string;
  tokenTtlMs: number;
  rotationIntervalMs: number;
  signMethod: string;
  maxFailuresPerUser: number;
  maxFailuresPerAddress: number;
  failureWindowMs: number;
  /** How long a bcrypt verification is reused for the same user, hash and password; 0: never. */
  verifiedPasswordTtlMs: number;
  /** Peers whose x-forwarded-for is believed; "*" believes any. */
  trustedProxies: string[];
  /** nats:// URLs: failed logins shared with the other replicas; "": each replica counts alone. */
  natsUrl: string;
  /**
   * CNs of the gateway certificates that may ask for a token for their client's certificate CN
   * (CommonNameToken); empty: nobody may. Needs --client-cert-auth (the CN must be verified).
   */
  trustedGatewayCns: string[];
  logLevel: string;
  /**
   * TLS for the gateways' gRPC port, with etcd's client-side flag names (--cert-file, --key-file,
   * --trusted-ca-file, --client-cert-auth); "": plaintext.
   */
  certFile: string;
  keyFile: string;
  trustedCaFile: string;
  clientCertAuth: boolean;
  /**
   * TLS to the members' peer URLs (https://), with etcd's peer-side names: this service is a
   * client of the peer port, so it shows a peer certificate (--peer-cert-file, --peer-key-file)
   * and verifies members against --peer-trusted-ca-file.
   */
  peerCertFile: string;
  peerKeyFile: string;
  peerTrustedCaFile: string;
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** `boolean`: the flag may stand alone (`--client-cert-auth`), as etcd's boolean flags do. */
type Spec = { env: string; parse: (value: string, config: AuthConfig) => void; boolean?: true };

const secondsOrZero = (flag: string, value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new ConfigError(`--${flag} must be a number of seconds (0: off)`);
  return n * 1000;
};
const seconds = (flag: string, value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new ConfigError(`--${flag} must be a positive number of seconds`);
  return n * 1000;
};
const count = (flag: string, value: string) => {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new ConfigError(`--${flag} must be a positive integer`);
  return n;
};
const list = (value: string) =>
  value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");

/** JWS algorithms a member's verifier knows (jose generates keys for each). */
export const SIGN_METHODS = ["ES256", "ES384", "ES512", "EdDSA", "RS256", "PS256"];

/** A flag that sets one field of the config from its value. */
function field<K extends keyof AuthConfig>(
  env: string,
  key: K,
  parse: (value: string) => AuthConfig[K],
): Spec {
  return {
    env,
    parse: (value, config) => {
      config[key] = parse(value);
    },
  };
}

const FLAGS: Record<string, Spec> = {
  endpoints: field("ETCD_AUTH_ENDPOINTS", "endpoints", list),
  "listen-addr": field("ETCD_AUTH_LISTEN_ADDR", "listenAddr", (v) => v),
  "http-listen-addr": field("ETCD_AUTH_HTTP_LISTEN_ADDR", "httpListenAddr", (v) => v),
  "token-ttl": field("ETCD_AUTH_TOKEN_TTL", "tokenTtlMs", (v) => seconds("token-ttl", v)),
  "rotation-interval": field("ETCD_AUTH_ROTATION_INTERVAL", "rotationIntervalMs", (v) =>
    seconds("rotation-interval", v),
  ),
  "sign-method": field("ETCD_AUTH_SIGN_METHOD", "signMethod", (v) => {
    if (!SIGN_METHODS.includes(v))
      throw new ConfigError(`--sign-method must be one of ${SIGN_METHODS.join(", ")}`);
    return v;
  }),
  "max-failures-per-user": field("ETCD_AUTH_MAX_FAILURES_PER_USER", "maxFailuresPerUser", (v) =>
    count("max-failures-per-user", v),
  ),
  "max-failures-per-address": field("ETCD_AUTH_MAX_FAILURES_PER_ADDRESS", "maxFailuresPerAddress", (v) =>
    count("max-failures-per-address", v),
  ),
  "failure-window": field("ETCD_AUTH_FAILURE_WINDOW", "failureWindowMs", (v) => seconds("failure-window", v)),
  "verified-password-ttl": field("ETCD_AUTH_VERIFIED_PASSWORD_TTL", "verifiedPasswordTtlMs", (v) =>
    secondsOrZero("verified-password-ttl", v),
  ),
  "trusted-proxies": field("ETCD_AUTH_TRUSTED_PROXIES", "trustedProxies", list),
  "nats-url": field("ETCD_AUTH_NATS_URL", "natsUrl", (v) => {
    const problem = natsUrlProblem("nats-url", v);
    if (problem !== undefined) throw new ConfigError(problem);
    return v;
  }),
  "trusted-gateway-cn": field("ETCD_AUTH_TRUSTED_GATEWAY_CN", "trustedGatewayCns", list),
  "log-level": field("ETCD_AUTH_LOG_LEVEL", "logLevel", (v) => v),
  "cert-file": field("ETCD_AUTH_CERT_FILE", "certFile", (v) => v),
  "key-file": field("ETCD_AUTH_KEY_FILE", "keyFile", (v) => v),
  "trusted-ca-file": field("ETCD_AUTH_TRUSTED_CA_FILE", "trustedCaFile", (v) => v),
  "client-cert-auth": {
    ...field("ETCD_AUTH_CLIENT_CERT_AUTH", "clientCertAuth", (v) => {
      if (v !== "true" && v !== "false") throw new ConfigError("--client-cert-auth must be true or false");
      return v === "true";
    }),
    boolean: true,
  },
  "peer-cert-file": field("ETCD_AUTH_PEER_CERT_FILE", "peerCertFile", (v) => v),
  "peer-key-file": field("ETCD_AUTH_PEER_KEY_FILE", "peerKeyFile", (v) => v),
  "peer-trusted-ca-file": field("ETCD_AUTH_PEER_TRUSTED_CA_FILE", "peerTrustedCaFile", (v) => v),
};

export const USAGE = `Usage: etcd-ts-auth --endpoints=http://127.0.0.1:12380,... [options]

  --endpoints                 members' peer URLs, comma-separated            (ETCD_AUTH_ENDPOINTS)
  --listen-addr               gRPC for gateways, default 127.0.0.1:2391      (ETCD_AUTH_LISTEN_ADDR)
  --http-listen-addr          JWKS, /health, /metrics, default 127.0.0.1:2392 (ETCD_AUTH_HTTP_LISTEN_ADDR)
  --token-ttl                 token lifetime, seconds, default 300           (ETCD_AUTH_TOKEN_TTL)
  --rotation-interval         signing key rotation, seconds, default 86400   (ETCD_AUTH_ROTATION_INTERVAL)
  --sign-method               ${SIGN_METHODS.join(", ")}; default ES256       (ETCD_AUTH_SIGN_METHOD)
  --max-failures-per-user     failed logins per window per user, default 5   (ETCD_AUTH_MAX_FAILURES_PER_USER)
  --max-failures-per-address  per client address, default 20                 (ETCD_AUTH_MAX_FAILURES_PER_ADDRESS)
  --failure-window            seconds, default 60                            (ETCD_AUTH_FAILURE_WINDOW)
  --verified-password-ttl     seconds a bcrypt success is reused for the same user and password
                              (hash re-read every login), default 300, 0 = off (ETCD_AUTH_VERIFIED_PASSWORD_TTL)
  --trusted-proxies           peers whose x-forwarded-for is believed (the gateways), comma-separated
                              IPs or *, default loopback                     (ETCD_AUTH_TRUSTED_PROXIES)
  --nats-url                  nats://host:port: share failed logins with the other replicas
                              (one budget for all), default none             (ETCD_AUTH_NATS_URL)
  --trusted-gateway-cn        CNs of gateway certificates that may ask for a token for their client
                              certificate's CN, comma-separated; needs --client-cert-auth
                              (ETCD_AUTH_TRUSTED_GATEWAY_CN)
  --log-level                 pino level, default info                       (ETCD_AUTH_LOG_LEVEL)
TLS for the gateways (gRPC port; each flag also as ETCD_AUTH_<FLAG>):
  --cert-file, --key-file     serve TLS with this certificate
  --trusted-ca-file           verify gateways' client certificates against this CA
  --client-cert-auth          require one
TLS to the members (https:// peer URLs):
  --peer-trusted-ca-file      verify members against this CA
  --peer-cert-file, --peer-key-file  the certificate shown to members (--peer-client-cert-auth)
`;

export function defaultConfig(): AuthConfig {
  return {
    endpoints: [],
    listenAddr: "127.0.0.1:2391",
    httpListenAddr: "127.0.0.1:2392",
    tokenTtlMs: 300_000,
    rotationIntervalMs: 86_400_000,
    signMethod: "ES256",
    maxFailuresPerUser: 5,
    maxFailuresPerAddress: 20,
    failureWindowMs: 60_000,
    verifiedPasswordTtlMs: 300_000,
    trustedProxies: ["127.0.0.1", "::1", "::ffff:127.0.0.1"],
    natsUrl: "",
    trustedGatewayCns: [],
    logLevel: "info",
    certFile: "",
    keyFile: "",
    trustedCaFile: "",
    clientCertAuth: false,
    peerCertFile: "",
    peerKeyFile: "",
    peerTrustedCaFile: "",
  };
}

export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv): AuthConfig {
  const config = defaultConfig();
  for (const spec of Object.values(FLAGS)) {
    const v = env[spec.env];
    if (v !== undefined && v !== "") spec.parse(v, config);
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("--")) throw new ConfigError(`unexpected argument ${JSON.stringify(arg)}`);
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const spec = FLAGS[name];
    if (spec === undefined) throw new ConfigError(`unknown flag --${name}`);
    const standsAlone = spec.boolean === true && eq === -1 && !/^(true|false)$/.test(argv[i + 1] ?? "");
    const value = eq !== -1 ? arg.slice(eq + 1) : standsAlone ? "true" : argv[++i];
    if (value === undefined) throw new ConfigError(`--${name} needs a value`);
    spec.parse(value, config);
  }
  if (config.endpoints.length === 0) throw new ConfigError("--endpoints is required");
  if ((config.certFile === "") !== (config.keyFile === ""))
    throw new ConfigError("--cert-file and --key-file go together");
  if ((config.trustedCaFile !== "" || config.clientCertAuth) && config.certFile === "")
    throw new ConfigError("--trusted-ca-file and --client-cert-auth need --cert-file (TLS)");
  if (config.trustedGatewayCns.length > 0 && !config.clientCertAuth)
    throw new ConfigError("--trusted-gateway-cn needs --client-cert-auth (a verified gateway certificate)");
  if ((config.peerCertFile === "") !== (config.peerKeyFile === ""))
    throw new ConfigError("--peer-cert-file and --peer-key-file go together");
  const secure = config.endpoints.filter((e) => e.startsWith("https://")).length;
  if (secure > 0 && config.peerTrustedCaFile === "")
    throw new ConfigError("https:// endpoints need --peer-trusted-ca-file");
  if (secure !== 0 && secure !== config.endpoints.length)
    throw new ConfigError("--endpoints mixes http:// and https:// peer URLs");
  return config;
}
