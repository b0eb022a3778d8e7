import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { JwtTokens, parseJwtOptions } from "./jwt-tokens.js";

const duration = (d: string) => {
  const m = /^(\d+)(s|m)$/.exec(d);
  if (m === null) throw new Error(`bad duration ${d}`);
  return Number(m[1]) * (m[2] === "m" ? 60_000 : 1000);
};

describe("JWT tokens (etcd's --auth-token jwt)", () => {
  let dir: string;
  const keys = new Map<string, { pub: string; priv: string }>();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "jwt-"));
    const pairs = {
      rsa: generateKeyPairSync("rsa", { modulusLength: 2048 }),
      ec256: generateKeyPairSync("ec", { namedCurve: "P-256" }),
      ed: generateKeyPairSync("ed25519"),
    };
    for (const [name, pair] of Object.entries(pairs)) {
      const pub = join(dir, `${name}.pub`);
      const priv = join(dir, `${name}.key`);
      await writeFile(pub, pair.publicKey.export({ type: "spki", format: "pem" }));
      await writeFile(priv, pair.privateKey.export({ type: "pkcs8", format: "pem" }));
      keys.set(name, { pub, priv });
    }
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const tokensFor = (key: string, method: string, now: () => number, extra = "") => {
    const k = keys.get(key)!;
    return new JwtTokens(
      parseJwtOptions(`,pub-key=${k.pub},priv-key=${k.priv},sign-method=${method}${extra}`, duration),
      now,
    );
  };

  for (const [key, method] of [
    ["rsa", "RS256"],
    ["rsa", "PS384"],
    ["ec256", "ES256"],
    ["ed", "EdDSA"],
  ] as const) {
    it(`${method}: carries username and revision, verified with the public key alone`, () => {
      const now = 1_700_000_000_000;
      const token = tokensFor(key, method, () => now).assign("alice", 7);
      const claims = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString());
      assert.deepEqual(claims, { exp: Math.floor((now + 300_000) / 1000), revision: 7, username: "alice" });
      const verifier = new JwtTokens(
        parseJwtOptions(`,pub-key=${keys.get(key)!.pub},sign-method=${method}`, duration),
        () => now,
      );
      assert.deepEqual(verifier.info(token), { username: "alice", revision: 7 });
      assert.throws(() => verifier.assign("alice", 7), /authentication failed/, "verify-only");
    });
  }

  it("refuses an expired, tampered or differently signed token", () => {
    let now = 1_700_000_000_000;
    const tokens = tokensFor("rsa", "RS256", () => now, ",ttl=1m");
    const token = tokens.assign("alice", 3);
    const [h, , s] = token.split(".");
    const forged = Buffer.from(JSON.stringify({ exp: 9e9, revision: 3, username: "root" })).toString(
      "base64url",
    );
    assert.equal(tokens.info(`${h}.${forged}.${s}`), undefined);
    assert.equal(tokensFor("rsa", "PS256", () => now).info(token), undefined);
    assert.equal(tokens.info("not-a-token"), undefined);
    now += 61_000;
    assert.equal(tokens.info(token), undefined);
  });

  it("refuses unknown sign methods and missing keys at start", () => {
    assert.throws(() => parseJwtOptions(",sign-method=HS256,pub-key=x", duration), /signature method/);
    assert.throws(() => parseJwtOptions(",sign-method=RS256", duration), /missing key/);
  });
});
