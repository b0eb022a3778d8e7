import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { describe, it } from "node:test";
import { signJws } from "@etcd-ts/api";
import { CertificateTokens } from "./certificate-tokens.js";

const b64 = (v: string) => Buffer.from(v).toString("base64url");
const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });

/** What services/auth signs for a CN: etcd's claims, `ttlS` to live from `nowMs`. */
function tokenFor(username: string, nowMs: number, ttlS: number): string {
  const input = `${b64(JSON.stringify({ alg: "ES256", typ: "JWT", kid: "k1" }))}.${b64(
    JSON.stringify({ username, revision: 3, exp: Math.floor(nowMs / 1000) + ttlS }),
  )}`;
  return `${input}.${Buffer.from(signJws("ES256", privateKey, input)).toString("base64url")}`;
}

describe("CertificateTokens", () => {
  it("asks once per CN for every call meanwhile, holds the token until half its life, then asks again", async () => {
    let now = 1_700_000_000_000;
    const asked: string[] = [];
    const tokens = new CertificateTokens(
      async (cn) => {
        asked.push(cn);
        return { token: tokenFor(cn, now, 60) };
      },
      undefined,
      () => now,
    );
    const first = tokens.tokenFor("alice");
    const second = tokens.tokenFor("alice");
    assert.ok(first instanceof Promise && second instanceof Promise);
    const token = await first;
    assert.equal(await second, token);
    assert.deepEqual(asked, ["alice"]);
    now += 29_000;
    assert.equal(tokens.tokenFor("alice"), token, "held, synchronously");
    now += 2_000;
    const renewed = await tokens.tokenFor("alice");
    assert.notEqual(renewed, undefined);
    assert.deepEqual(asked, ["alice", "alice"]);
    // Another CN has its own token.
    await tokens.tokenFor("bob");
    assert.deepEqual(asked, ["alice", "alice", "bob"]);
  });

  it("remembers a failed ask for a second (the call goes on without a token) and reports it", async () => {
    let now = 1_700_000_000_000;
    let answer: { token: string } | { error: string } = { error: "FAILED_PRECONDITION: not enabled" };
    const failures: string[] = [];
    const tokens = new CertificateTokens(
      async () => answer,
      (cn, error) => failures.push(`${cn}: ${error}`),
      () => now,
    );
    assert.equal(await tokens.tokenFor("alice"), undefined);
    assert.equal(tokens.tokenFor("alice"), undefined, "not asked again at once");
    assert.deepEqual(failures, ["alice: FAILED_PRECONDITION: not enabled"]);
    answer = { token: tokenFor("alice", now, 60) };
    now += 1_001;
    assert.equal(await tokens.tokenFor("alice"), answer.token);
    // A rejected ask counts as a failed one.
    const broken = new CertificateTokens(
      async () => Promise.reject(new Error("down")),
      undefined,
      () => now,
    );
    assert.equal(await broken.tokenFor("x"), undefined);
  });

  it("asks anew once the gateway has seen a newer auth revision than a held token's", async () => {
    const now = 1_700_000_000_000;
    let asked = 0;
    const tokens = new CertificateTokens(
      async (cn) => {
        asked++;
        return { token: tokenFor(cn, now, 60) };
      },
      undefined,
      () => now,
    );
    const first = await tokens.tokenFor("alice");
    tokens.authRevisionSeen(3);
    assert.equal(tokens.tokenFor("alice"), first, "signed at revision 3: still current");
    tokens.authRevisionSeen(4);
    assert.ok(tokens.tokenFor("alice") instanceof Promise, "older than revision 4: asked again");
    const second = await tokens.tokenFor("alice");
    assert.equal(asked, 2);
    // Signed at 3 again (the service's read is the truth): held for 4, not asked on every call.
    assert.equal(tokens.tokenFor("alice"), second);
    assert.equal(asked, 2);
  });

  it("forgets a token a member found old, and only that token", async () => {
    let n = 0;
    const now = 1_700_000_000_000;
    const tokens = new CertificateTokens(
      async (cn) => ({ token: `${tokenFor(cn, now, 60)}${n++}` }),
      undefined,
      () => now,
    );
    const old = await tokens.tokenFor("alice");
    tokens.forget("alice", "some other token");
    assert.equal(tokens.tokenFor("alice"), old);
    tokens.forget("alice", old!);
    const fresh = await tokens.tokenFor("alice");
    assert.notEqual(fresh, old);
  });
});
