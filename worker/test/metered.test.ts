// Idempotency, quota and rate limit around metered requests.
import { describe, expect, it } from "vitest";
import { freshTenant, postJson, quota, signIn, uuid } from "./helpers";

type ErrorBody = { error: { code: string; message: string; retry_after?: number; plan_required?: string; quota?: Record<string, unknown>; max_bytes?: number } };

const chatBody = (text: string, stream = false) => ({ messages: [{ role: "user", content: text }], stream, max_tokens: 64 });

describe("idempotency", () => {
  it("replays the stored response for a retried key and charges once", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const key = uuid();
    const a = await postJson("/chat", { tenant, token: s.access_token, key }, chatBody("hello"));
    expect(a.status).toBe(200);
    expect(a.headers.get("RateLimit-Remaining")).toBe("49");
    const bodyA = await a.text();
    const b = await postJson("/chat", { tenant, token: s.access_token, key }, chatBody("hello"));
    expect(b.status).toBe(200);
    expect(b.headers.get("Idempotent-Replayed")).toBe("true");
    expect(await b.text()).toBe(bodyA);
    expect((await quota(tenant, s.access_token)).remaining).toBe(49);
  });

  it("treats reordered JSON keys as the same logical request", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const key = uuid();
    const a = await postJson("/images", { tenant, token: s.access_token, key }, { prompt: "a fox", width: 256, height: 256 });
    expect(a.status).toBe(200);
    const b = await postJson("/images", { tenant, token: s.access_token, key }, { height: 256, width: 256, prompt: "a fox" });
    expect(b.status).toBe(200);
    expect(b.headers.get("Idempotent-Replayed")).toBe("true");
  });

  it("answers 422 idempotency_key_reused for the same key with a different body, uncharged", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const key = uuid();
    expect((await postJson("/chat", { tenant, token: s.access_token, key }, chatBody("one"))).status).toBe(200);
    const r = await postJson("/chat", { tenant, token: s.access_token, key }, chatBody("two"));
    expect(r.status).toBe(422);
    expect(((await r.json()) as ErrorBody).error.code).toBe("idempotency_key_reused");
    expect((await quota(tenant, s.access_token)).remaining).toBe(49);
  });

  it("the same key on another route is a different request (422)", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const key = uuid();
    expect((await postJson("/images", { tenant, token: s.access_token, key }, { prompt: "x", width: 256, height: 256 })).status).toBe(200);
    const r = await postJson("/jobs", { tenant, token: s.access_token, key }, { kind: "transcribe", input: { url: "https://example.com/a.m4a" } });
    expect(r.status).toBe(422);
  });

  it("5 concurrent identical requests with one key are charged once and all get the same answer", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const key = uuid();
    const rs = await Promise.all(Array.from({ length: 5 }, () => postJson("/chat", { tenant, token: s.access_token, key }, chatBody("same words here"))));
    expect(rs.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    const bodies = await Promise.all(rs.map((r) => r.text()));
    expect(new Set(bodies).size).toBe(1);
    expect((await quota(tenant, s.access_token)).remaining).toBe(49);
  });

  it("5 concurrent identical streaming requests with one key are charged once", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const key = uuid();
    const rs = await Promise.all(Array.from({ length: 5 }, () => postJson("/chat", { tenant, token: s.access_token, key }, chatBody("stream me please", true))));
    expect(rs.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    const bodies = await Promise.all(rs.map((r) => r.text()));
    expect(new Set(bodies).size).toBe(1);
    expect(bodies[0]).toContain("data: [DONE]");
    expect((await quota(tenant, s.access_token)).remaining).toBe(49);
  });

  it("requires an Idempotency-Key on metered POSTs", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const r = await postJson("/chat", { tenant, token: s.access_token }, chatBody("hi"));
    expect(r.status).toBe(400);
    expect(((await r.json()) as ErrorBody).error.code).toBe("bad_request");
  });
});

describe("quota", () => {
  it("GET /quota answers the entitlement state with quota headers", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const r = await postJson("/chat", { tenant, token: s.access_token, key: uuid() }, chatBody("hi"));
    expect(r.status).toBe(200);
    const q = await (await import("./helpers")).api("/quota", { tenant, token: s.access_token });
    expect(q.headers.get("RateLimit-Limit")).toBe("50");
    expect(q.headers.get("RateLimit-Remaining")).toBe("49");
    expect(q.headers.get("X-Plan")).toBe("free");
    const reset = Number(q.headers.get("RateLimit-Reset"));
    expect(reset).toBeGreaterThan(0);
    expect(reset).toBeLessThanOrEqual(86400);
    const body = (await q.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ plan: "free", limit: 50, remaining: 49 });
    expect(body.reset_at).toMatch(/^\d{4}-\d\d-\d\dT00:00:00Z$/);
    expect(body.features).toEqual(expect.arrayContaining(["detect", "chat", "vision"]));
  });

  it("runs out exactly at the limit under concurrent calls (limit 50)", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const rs = await Promise.all(
      Array.from({ length: 60 }, (_, i) => postJson("/images", { tenant, token: s.access_token, key: uuid() }, { prompt: `p${i}`, width: 256, height: 256 })),
    );
    const statuses = rs.map((r) => r.status);
    expect(statuses.filter((x) => x === 200).length).toBe(50);
    expect(statuses.filter((x) => x === 402).length).toBe(10);
    expect((await quota(tenant, s.access_token)).remaining).toBe(0);
  }, 60_000);

  it("402 carries plan_required and the quota object; a 402 is not stored", async () => {
    const tenant = `app-small`; // TENANT_LIMITS gives this tenant a free limit of 3
    const s = await signIn(tenant);
    for (let i = 0; i < 3; i++) expect((await postJson("/chat", { tenant, token: s.access_token, key: uuid() }, chatBody(`m${i}`))).status).toBe(200);
    const key = uuid();
    const r = await postJson("/chat", { tenant, token: s.access_token, key }, chatBody("one more"));
    expect(r.status).toBe(402);
    expect(r.headers.get("RateLimit-Remaining")).toBe("0");
    const e = (await r.json()) as ErrorBody;
    expect(e.error.code).toBe("quota_exceeded");
    expect(e.error.plan_required).toBe("pro");
    expect(e.error.quota).toMatchObject({ plan: "free", limit: 3, remaining: 0 });
    expect(e.error.quota!.reset_at).toMatch(/Z$/);
    expect(typeof e.error.message).toBe("string");
  });
});

describe("rate limit", () => {
  it("answers 429 rate_limited with Retry-After past the per-user limit", async () => {
    const tenant = "app-ratelimit"; // TENANT_LIMITS: 5 requests per minute
    const s = await signIn(tenant);
    const statuses: number[] = [];
    let limited: Response | null = null;
    for (let i = 0; i < 7; i++) {
      const r = await (await import("./helpers")).api("/quota", { tenant, token: s.access_token });
      statuses.push(r.status);
      if (r.status === 429) limited = r;
    }
    expect(statuses.slice(0, 5)).toEqual([200, 200, 200, 200, 200]);
    expect(limited).not.toBeNull();
    const retry = Number(limited!.headers.get("Retry-After"));
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(60);
    const e = (await limited!.json()) as ErrorBody;
    expect(e.error.code).toBe("rate_limited");
    expect(e.error.retry_after).toBe(retry);
    // Metered requests are limited too, and not charged.
    const m = await postJson("/chat", { tenant, token: s.access_token, key: uuid() }, chatBody("hi"));
    expect(m.status).toBe(429);
  });
});
