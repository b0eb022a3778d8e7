// etcd's JWT tokens on the wire (auth/jwt.go): a JWS whose claims are `username`, `revision` (the
// auth revision at Authenticate) and `exp`. Members sign and verify them, services/auth signs
// them, and the gateway verifies them to refuse a bad token before it costs a member a call: one
// implementation for all three, so none of them accepts what another refuses.
//
// node:crypto rather than `jose`: verification runs on every request in the members' RPC layer
// and must be synchronous there (a watch stream's creates must keep their order; an await per
// call would reorder them), and jose only offers async sign/verify. The JWS encoding is small
// and fixed.
import { constants, type KeyObject, sign, verify } from "node:crypto";

/** Who a token names: etcd's `username` and the auth `revision` it was issued at. */
export interface TokenClaims {
  username: string;
  revision: number;
}

interface Algorithm {
  hash: string | null;
  padding?: number;
  saltLength?: number;
  dsaEncoding?: "ieee-p1363";
}

const ALGORITHMS: Record<string, Algorithm> = {
  RS256: { hash: "sha256", padding: constants.RSA_PKCS1_PADDING },
  RS384: { hash: "sha384", padding: constants.RSA_PKCS1_PADDING },
  RS512: { hash: "sha512", padding: constants.RSA_PKCS1_PADDING },
  PS256: { hash: "sha256", padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
  PS384: { hash: "sha384", padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 },
  PS512: { hash: "sha512", padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 64 },
  ES256: { hash: "sha256", dsaEncoding: "ieee-p1363" },
  ES384: { hash: "sha384", dsaEncoding: "ieee-p1363" },
  ES512: { hash: "sha512", dsaEncoding: "ieee-p1363" },
  EdDSA: { hash: null },
};

/** Whether `alg` is a JWS algorithm etcd signs tokens with (and this module verifies). */
export function isJwsAlgorithm(alg: unknown): alg is string {
  return typeof alg === "string" && Object.hasOwn(ALGORITHMS, alg);
}

function keyParams(a: Algorithm, key: KeyObject) {
  return {
    key,
    ...(a.padding !== undefined ? { padding: a.padding } : {}),
    ...(a.saltLength !== undefined ? { saltLength: a.saltLength } : {}),
    ...(a.dsaEncoding !== undefined ? { dsaEncoding: a.dsaEncoding } : {}),
  };
}

/** The JWS signature of `signingInput` ("header.claims") with `alg` (isJwsAlgorithm) and a private key. */
export function signJws(alg: string, privateKey: KeyObject, signingInput: string): Buffer {
  const a = ALGORITHMS[alg];
  if (a === undefined) throw new Error(`unsupported JWS algorithm ${alg}`);
  return sign(a.hash, Buffer.from(signingInput), keyParams(a, privateKey));
}

/** Checks a JWS signature over `signingInput` ("header.claims") with `alg` and a public key. */
export function verifyJws(alg: string, key: KeyObject, signingInput: string, signature: Buffer): boolean {
  const a = ALGORITHMS[alg];
  if (a === undefined) return false;
  return verify(a.hash, Buffer.from(signingInput), keyParams(a, key), signature);
}

/**
 * The caller etcd's claims name (`username`, `revision`), unless `exp` has passed. Throws on a
 * part that is not base64url JSON.
 */
export function etcdClaims(claimsPart: string, nowMs: number): TokenClaims | undefined {
  const body = JSON.parse(Buffer.from(claimsPart, "base64url").toString()) as Record<string, unknown>;
  if (typeof body.exp === "number" && body.exp * 1000 <= nowMs) return undefined;
  if (typeof body.username !== "string" || typeof body.revision !== "number") return undefined;
  return { username: body.username, revision: body.revision };
}

/**
 * A JWS's `exp` in ms, read without checking its signature (Infinity without one); undefined when
 * `token` is not a three-part JWS with JSON claims (a simple token, garbage).
 */
export function unverifiedExpiryMs(token: string): number | undefined {
  const first = token.indexOf(".");
  const last = token.lastIndexOf(".");
  if (!token.startsWith("ey") || first <= 0 || last === first) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(token.slice(first + 1, last), "base64url").toString()) as {
      exp?: unknown;
    };
    if (typeof claims !== "object" || claims === null) return undefined;
    return typeof claims.exp === "number" ? claims.exp * 1000 : Number.POSITIVE_INFINITY;
  } catch {
    return undefined;
  }
}

/** The `kid` of a JWS whose header names one; undefined for simple tokens and kid-less JWTs. */
export function jwsKeyId(token: string): string | undefined {
  // Every JWS header is base64url of '{"...': it starts with "ey". Most simple tokens stop here,
  // without a failed parse on each request.
  if (!token.startsWith("ey")) return undefined;
  const dot = token.indexOf(".");
  // A simple token is "<16 letters>.<index>": its first part is not a JSON header.
  if (dot <= 0 || token.indexOf(".", dot + 1) < 0) return undefined;
  try {
    const head = JSON.parse(Buffer.from(token.slice(0, dot), "base64url").toString()) as { kid?: unknown };
    return typeof head.kid === "string" && head.kid !== "" ? head.kid : undefined;
  } catch {
    return undefined;
  }
}
