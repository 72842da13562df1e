import { afterEach, describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:test";
import { api, freshTenant, postJson, signIn, type Session } from "./helpers";
import { signAccessToken, verifyAccessToken } from "../src/jwt";

const b64u = (s: string) => btoa(s).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");

async function refresh(tenant: string, token: string, key?: string) {
  return api("/auth/refresh", {
    method: "POST",
    tenant,
    ...(key ? { key } : {}),
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: token }),
  });
}

const codeOf = async (r: Response) => ((await r.json()) as { error: { code: string } }).error.code;

async function expectRevoked(r: Response) {
  expect(r.status).toBe(401);
  expect(await codeOf(r)).toBe("session_revoked");
}

/** The test clock: the Worker and its Durable Objects run in this isolate and read this Date. */
function clockAt(epochMs: number) {
  vi.useFakeTimers({ toFake: ["Date"], now: epochMs });
}

afterEach(() => {
  vi.useRealTimers();
});

function signOut(tenant: string, body: unknown, token?: string) {
  return api("/auth/signout", {
    method: "POST",
    tenant,
    ...(token !== undefined ? { token } : {}),
    headers: { "Content-Type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

describe("anonymous sign-in", () => {
  it("returns a session in the contract's shape", async () => {
    const tenant = freshTenant();
    const res = await api("/auth/anonymous", { method: "POST", tenant, headers: { "Content-Type": "application/json" }, body: JSON.stringify({ device_id: "d-1" }) });
    expect(res.status).toBe(200);
    expect(res.headers.get("X-Request-ID")).toMatch(/^req_/);
    const s = (await res.json()) as Session;
    expect(s.token_type).toBe("Bearer");
    expect(s.expires_in).toBe(900);
    expect(s.user.anonymous).toBe(true);
    expect(s.user.id).toMatch(/^u_/);
    const [h, p] = s.access_token.split(".");
    expect(JSON.parse(atob(h!))).toEqual({ alg: "HS256", typ: "JWT" });
    const claims = JSON.parse(atob(p!.replaceAll("-", "+").replaceAll("_", "/")));
    expect(claims.exp - claims.iat).toBe(900);
    expect(claims.sub).toBe(s.user.id);
  });

  it("TENANT_LIMITS can shorten one tenant's access-token lifetime (sign-in and refresh)", async () => {
    const s = await signIn("app-shortttl"); // TENANT_LIMITS: access_ttl_seconds 5
    expect(s.expires_in).toBe(5);
    const claims = JSON.parse(atob(s.access_token.split(".")[1]!.replaceAll("-", "+").replaceAll("_", "/")));
    expect(claims.exp - claims.iat).toBe(5);
    const r = (await (await refresh("app-shortttl", s.refresh_token)).json()) as Session;
    expect(r.expires_in).toBe(5);
    expect((await signIn(freshTenant())).expires_in).toBe(900);
  });

  it("accepts an empty body", async () => {
    const res = await api("/auth/anonymous", { method: "POST", tenant: freshTenant() });
    expect(res.status).toBe(200);
  });

  it("requires X-Client-ID", async () => {
    const res = await api("/auth/anonymous", { method: "POST" });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("bad_request");
  });

  it("limits sign-ups per client IP", async () => {
    const tenant = freshTenant();
    const statuses: number[] = [];
    for (let i = 0; i < 31; i++) {
      const r = await api("/auth/anonymous", { method: "POST", tenant, headers: { "CF-Connecting-IP": "203.0.113.9" } });
      statuses.push(r.status);
      if (r.status === 429) {
        expect(Number(r.headers.get("Retry-After"))).toBeGreaterThan(0);
        break;
      }
    }
    expect(statuses.at(-1)).toBe(429);
  });
});

describe("refresh rotation", () => {
  it("rotates: the new token works once, the old one is spent", async () => {
    const tenant = freshTenant();
    const s0 = await signIn(tenant);
    const r1 = await refresh(tenant, s0.refresh_token);
    expect(r1.status).toBe(200);
    const s1 = (await r1.json()) as Session;
    expect(s1.refresh_token).not.toBe(s0.refresh_token);
    expect(s1.user.id).toBe(s0.user.id);
    const r2 = await refresh(tenant, s1.refresh_token);
    expect(r2.status).toBe(200);
  });

  it("reuse of a spent token revokes the whole family", async () => {
    const tenant = freshTenant();
    const s0 = await signIn(tenant);
    const s1 = (await (await refresh(tenant, s0.refresh_token)).json()) as Session;
    const reuse = await refresh(tenant, s0.refresh_token);
    expect(reuse.status).toBe(401);
    expect(((await reuse.json()) as { error: { code: string } }).error.code).toBe("session_revoked");
    // The legitimate newest token is now dead too.
    const after = await refresh(tenant, s1.refresh_token);
    expect(after.status).toBe(401);
    expect(((await after.json()) as { error: { code: string } }).error.code).toBe("session_revoked");
  });

  it("20 concurrent refreshes with one token issue at most one session", async () => {
    const tenant = freshTenant();
    const s0 = await signIn(tenant);
    const results = await Promise.all(Array.from({ length: 20 }, () => refresh(tenant, s0.refresh_token)));
    const ok = results.filter((r) => r.status === 200);
    expect(ok.length).toBeLessThanOrEqual(1);
    for (const r of results.filter((r) => r.status !== 200)) {
      expect(r.status).toBe(401);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe("session_revoked");
    }
  });

  it("20 concurrent refreshes with one token and one Idempotency-Key all get the same single session", async () => {
    const tenant = freshTenant();
    const s0 = await signIn(tenant);
    const key = crypto.randomUUID();
    const results = await Promise.all(Array.from({ length: 20 }, () => refresh(tenant, s0.refresh_token, key)));
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
    const bodies = (await Promise.all(results.map((r) => r.json()))) as Session[];
    expect(new Set(bodies.map((b) => b.refresh_token)).size).toBe(1);
    // And that one session is live.
    expect((await refresh(tenant, bodies[0]!.refresh_token)).status).toBe(200);
  });

  it("a retry of the same refresh with the same key replays the session (connection reset mid-refresh)", async () => {
    const tenant = freshTenant();
    const s0 = await signIn(tenant);
    const key = crypto.randomUUID();
    const a = (await (await refresh(tenant, s0.refresh_token, key)).json()) as Session;
    const b = await refresh(tenant, s0.refresh_token, key);
    expect(b.status).toBe(200);
    // The same tokens, not merely a valid session.
    expect((await b.json()) as Session).toEqual(a);
    // And that session is live.
    expect((await refresh(tenant, a.refresh_token)).status).toBe(200);
  });

  it("the replay window is 24 h: identical tokens just inside it", async () => {
    const tenant = freshTenant();
    const s0 = await signIn(tenant);
    const key = crypto.randomUUID();
    const t0 = Date.now(); // before the refresh, so t0 + 24 h - 1 s is inside its window
    const a = (await (await refresh(tenant, s0.refresh_token, key)).json()) as Session;
    clockAt(t0 + (24 * 3600 - 1) * 1000);
    const b = await refresh(tenant, s0.refresh_token, key);
    expect(b.status).toBe(200);
    expect((await b.json()) as Session).toEqual(a);
    expect((await refresh(tenant, a.refresh_token)).status).toBe(200);
  });

  it("a replay after the 24 h window is reuse: 401 session_revoked, family revoked", async () => {
    const tenant = freshTenant();
    const s0 = await signIn(tenant);
    const key = crypto.randomUUID();
    const a = (await (await refresh(tenant, s0.refresh_token, key)).json()) as Session;
    const t1 = Date.now(); // after the refresh, so t1 + 24 h + 1 s is past its window
    clockAt(t1 + (24 * 3600 + 1) * 1000);
    await expectRevoked(await refresh(tenant, s0.refresh_token, key));
    await expectRevoked(await refresh(tenant, a.refresh_token));
  });

  it("no replay once the replayed session's refresh token was used: 401 session_revoked, family revoked", async () => {
    const tenant = freshTenant();
    const s0 = await signIn(tenant);
    const key = crypto.randomUUID();
    const s1 = (await (await refresh(tenant, s0.refresh_token, key)).json()) as Session;
    const r2 = await refresh(tenant, s1.refresh_token, crypto.randomUUID());
    expect(r2.status).toBe(200);
    const s2 = (await r2.json()) as Session;
    await expectRevoked(await refresh(tenant, s0.refresh_token, key));
    // The family's latest session is dead too.
    await expectRevoked(await refresh(tenant, s2.refresh_token));
  });

  it.each([
    ["another Idempotency-Key", () => crypto.randomUUID()],
    ["no Idempotency-Key", () => undefined],
  ])("the spent token with %s is reuse: 401 session_revoked, family revoked", async (_name, otherKey) => {
    const tenant = freshTenant();
    const s0 = await signIn(tenant);
    const key = crypto.randomUUID();
    const s1 = (await (await refresh(tenant, s0.refresh_token, key)).json()) as Session;
    await expectRevoked(await refresh(tenant, s0.refresh_token, otherKey()));
    await expectRevoked(await refresh(tenant, s1.refresh_token));
    // The legitimate retry cannot bring the family back either.
    await expectRevoked(await refresh(tenant, s0.refresh_token, key));
  });

  it("a refresh without a key is not replayable", async () => {
    const tenant = freshTenant();
    const s0 = await signIn(tenant);
    const s1 = (await (await refresh(tenant, s0.refresh_token)).json()) as Session;
    await expectRevoked(await refresh(tenant, s0.refresh_token));
    await expectRevoked(await refresh(tenant, s1.refresh_token));
  });

  it("garbage and missing refresh tokens", async () => {
    const tenant = freshTenant();
    expect((await refresh(tenant, "nope")).status).toBe(401);
    const r = await postJson("/auth/refresh", { tenant }, {});
    expect(r.status).toBe(400);
  });

  it("stores refresh tokens hashed", async () => {
    const tenant = freshTenant();
    const s0 = await signIn(tenant);
    const familyId = s0.refresh_token.split(".")[2]!;
    const stub = env.SESSIONS.get(env.SESSIONS.idFromName(`${tenant}|${familyId}`));
    const { runInDurableObject } = await import("cloudflare:test");
    const stored = await runInDurableObject(stub, (_o, state) => JSON.stringify([...state.storage.kv.list()]));
    expect(stored).not.toContain(s0.refresh_token.split(".")[3]!);
  });
});

describe("sign-out", () => {
  it("with a valid access token: revokes the family; 204 with the quota headers", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const out = await signOut(tenant, { refresh_token: s.refresh_token }, s.access_token);
    expect(out.status).toBe(204);
    expect(out.headers.get("RateLimit-Limit")).toBe("50");
    expect(out.headers.get("RateLimit-Remaining")).toBe("50");
    expect(out.headers.get("X-Plan")).toBe("free");
    await expectRevoked(await refresh(tenant, s.refresh_token));
  });

  it("without Authorization: the refresh token is the proof; the whole family is revoked", async () => {
    const tenant = freshTenant();
    const s0 = await signIn(tenant);
    const s1 = (await (await refresh(tenant, s0.refresh_token)).json()) as Session;
    const out = await signOut(tenant, { refresh_token: s1.refresh_token });
    expect(out.status).toBe(204);
    expect(out.headers.get("RateLimit-Limit")).toBeNull(); // not an authenticated request
    await expectRevoked(await refresh(tenant, s1.refresh_token));
  });

  it("with an expired access token: 204, not 401, and the family is revoked", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    clockAt(Date.now() + (s.expires_in + 60) * 1000);
    const check = await api("/quota", { tenant, token: s.access_token });
    expect(check.status).toBe(401); // the token really has expired
    const out = await signOut(tenant, { refresh_token: s.refresh_token }, s.access_token);
    expect(out.status).toBe(204);
    expect(out.headers.get("WWW-Authenticate")).toBeNull();
    await expectRevoked(await refresh(tenant, s.refresh_token));
  });

  it("with an invalid access token or another tenant's: 204 and the family is revoked", async () => {
    const tenant = freshTenant();
    const other = await signIn(freshTenant());
    for (const bearer of ["not.a.token", other.access_token]) {
      const s = await signIn(tenant);
      const out = await signOut(tenant, { refresh_token: s.refresh_token }, bearer);
      expect(out.status).toBe(204);
      await expectRevoked(await refresh(tenant, s.refresh_token));
    }
  });

  it("a spent refresh token of the family also signs it out", async () => {
    const tenant = freshTenant();
    const s0 = await signIn(tenant);
    const s1 = (await (await refresh(tenant, s0.refresh_token)).json()) as Session;
    expect((await signOut(tenant, { refresh_token: s0.refresh_token })).status).toBe(204);
    await expectRevoked(await refresh(tenant, s1.refresh_token));
  });

  it("204 for an unknown, malformed or already revoked token; a guessed token revokes nothing", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const [, user, family] = s.refresh_token.split(".");
    // The right user and family ids, but a random part the family never issued.
    const guessed = `rt1.${user}.${family}.${"A".repeat(43)}`;
    expect(guessed).not.toBe(s.refresh_token);
    for (const token of [guessed, `rt1.u_aaaaaaaaaaaaaaaaaaaa.f_aaaaaaaaaaaaaaaaaaaa.${"B".repeat(43)}`, "nope", ""]) {
      expect((await signOut(tenant, { refresh_token: token })).status).toBe(204);
    }
    // The real family is untouched by those.
    const r = await refresh(tenant, s.refresh_token);
    expect(r.status).toBe(200);
    const s1 = (await r.json()) as Session;
    // Signing out twice: 204 both times.
    expect((await signOut(tenant, { refresh_token: s1.refresh_token })).status).toBe(204);
    expect((await signOut(tenant, { refresh_token: s1.refresh_token })).status).toBe(204);
    await expectRevoked(await refresh(tenant, s1.refresh_token));
  });

  it("400 for a missing or malformed body, and nothing is revoked", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const noBody = await api("/auth/signout", { method: "POST", tenant });
    expect(noBody.status).toBe(400);
    expect(await codeOf(noBody)).toBe("bad_request");
    for (const body of ["{not json", "[]", "{}", JSON.stringify({ refresh_token: 5 }), JSON.stringify({ token: s.refresh_token })]) {
      const r = await signOut(tenant, body);
      expect(r.status, body).toBe(400);
      expect(await codeOf(r)).toBe("bad_request");
    }
    expect((await refresh(tenant, s.refresh_token)).status).toBe(200);
  });

  it("a replay of a refresh after sign-out is refused", async () => {
    const tenant = freshTenant();
    const s0 = await signIn(tenant);
    const key = crypto.randomUUID();
    const s1 = (await (await refresh(tenant, s0.refresh_token, key)).json()) as Session;
    expect((await signOut(tenant, { refresh_token: s1.refresh_token })).status).toBe(204);
    await expectRevoked(await refresh(tenant, s0.refresh_token, key));
  });
});

describe("access tokens", () => {
  async function expectInvalid(tenant: string, token: string) {
    const res = await api("/quota", { tenant, token });
    expect(res.status).toBe(401);
    expect(res.headers.get("WWW-Authenticate")).toBe('Bearer error="invalid_token"');
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_token");
    expect(res.headers.get("RateLimit-Limit")).toBeNull();
  }

  it("accepts a valid token", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    expect((await api("/quota", { tenant, token: s.access_token })).status).toBe(200);
  });

  it("rejects alg:none", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const [, p] = s.access_token.split(".");
    await expectInvalid(tenant, `${b64u(JSON.stringify({ alg: "none", typ: "JWT" }))}.${p}.`);
    await expectInvalid(tenant, `${b64u(JSON.stringify({ alg: "none", typ: "JWT" }))}.${p}.${s.access_token.split(".")[2]}`);
  });

  it("rejects RS256 (and HS256 signatures under another alg name)", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const [, p, sig] = s.access_token.split(".");
    await expectInvalid(tenant, `${b64u(JSON.stringify({ alg: "RS256", typ: "JWT" }))}.${p}.${sig}`);
    await expectInvalid(tenant, `${b64u(JSON.stringify({ alg: "HS512", typ: "JWT" }))}.${p}.${sig}`);
  });

  it("rejects a tampered payload, a wrong key, an expired token, and no token", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const [h, , sig] = s.access_token.split(".");
    const now = Math.floor(Date.now() / 1000);
    const forged = { iss: "tether-worker", aud: tenant, sub: "u_aaaaaaaaaaaaaaaaaaaa", sid: "f_x", iat: now, exp: now + 900, anon: true };
    await expectInvalid(tenant, `${h}.${b64u(JSON.stringify(forged))}.${sig}`);
    await expectInvalid(tenant, await signAccessToken(forged, "a-completely-different-secret-of-32+chars"));
    await expectInvalid(tenant, await signAccessToken({ ...forged, iat: now - 1000, exp: now - 1 }, env.JWT_SECRET!));
    const res = await api("/quota", { tenant });
    expect(res.status).toBe(401);
  });

  it("a token is only valid for the tenant it was issued for", async () => {
    const a = freshTenant();
    const b = freshTenant();
    const s = await signIn(a);
    await expectInvalid(b, s.access_token);
    // Also once its signature check is cached (after a successful use by tenant a).
    expect((await api("/quota", { tenant: a, token: s.access_token })).status).toBe(200);
    await expectInvalid(b, s.access_token);
    expect((await api("/quota", { tenant: a, token: s.access_token })).status).toBe(200);
  });

  it("a cached verification still checks expiry and the secret", async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: "tether-worker", aud: "t", sub: "u_cache", sid: "f_c", iat: now, exp: now + 10, anon: true };
    const token = await signAccessToken(claims, env.JWT_SECRET!);
    expect(await verifyAccessToken(token, env.JWT_SECRET!, "t", now)).not.toBeNull();
    expect(await verifyAccessToken(token, env.JWT_SECRET!, "t", now + 10)).toBeNull();
    expect(await verifyAccessToken(token, "another-secret-that-is-at-least-32-chars", "t", now)).toBeNull();
    expect(await verifyAccessToken(token, env.JWT_SECRET!, "other", now)).toBeNull();
  });
});
