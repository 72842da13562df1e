// Tenants (X-Client-ID) never see each other's users, tokens, quota or idempotency records.
import { describe, expect, it } from "vitest";
import type { Env } from "../src/env";
import { tenantOf } from "../src/tenant";
import { api, freshTenant, postJson, quota, signIn, uuid } from "./helpers";

describe("tenant isolation", () => {
  it("refresh tokens only work in their own tenant", async () => {
    const a = freshTenant();
    const b = freshTenant();
    const s = await signIn(a);
    const r = await postJson("/auth/refresh", { tenant: b }, { refresh_token: s.refresh_token });
    expect(r.status).toBe(401);
    // ...and the failed attempt in B did not touch the family in A.
    expect((await postJson("/auth/refresh", { tenant: a }, { refresh_token: s.refresh_token })).status).toBe(200);
  });

  it("quota and idempotency records are per tenant (and per user)", async () => {
    const a = freshTenant();
    const b = freshTenant();
    const sa = await signIn(a);
    const sb = await signIn(b);
    const key = uuid();
    const ra = await postJson("/chat", { tenant: a, token: sa.access_token, key }, { messages: [{ role: "user", content: "tenant a" }] });
    expect(ra.status).toBe(200);
    // Same key, different body, other tenant: a fresh request, not a 422 and not A's replay.
    const rb = await postJson("/chat", { tenant: b, token: sb.access_token, key }, { messages: [{ role: "user", content: "tenant b" }] });
    expect(rb.status).toBe(200);
    expect(rb.headers.get("Idempotent-Replayed")).toBeNull();
    expect(((await rb.json()) as { response: string }).response).toContain("tenant b");
    expect((await quota(a, sa.access_token)).remaining).toBe(49);
    expect((await quota(b, sb.access_token)).remaining).toBe(49);
  });

  it("an access token is not accepted under another X-Client-ID", async () => {
    const a = freshTenant();
    const s = await signIn(a);
    const r = await api("/quota", { tenant: freshTenant(), token: s.access_token });
    expect(r.status).toBe(401);
  });

  it("rejects malformed client ids", async () => {
    const r = await api("/auth/anonymous", { method: "POST", tenant: "bad id with spaces" });
    expect(r.status).toBe(400);
  });
});

describe("request ids and routing", () => {
  it("every response carries X-Request-ID; a sane incoming one is kept", async () => {
    const r1 = await api("/quota", { tenant: freshTenant() });
    expect(r1.headers.get("X-Request-ID")).toMatch(/^req_[0-9a-f]{32}$/);
    const r2 = await api("/quota", { tenant: freshTenant(), headers: { "X-Request-ID": "edge-1234567890" } });
    expect(r2.headers.get("X-Request-ID")).toBe("edge-1234567890");
    const r3 = await api("/quota", { tenant: freshTenant(), headers: { "X-Request-ID": "bad id\u0001" } });
    expect(r3.headers.get("X-Request-ID")).toMatch(/^req_/);
    const fresh = new Set<string>();
    for (let i = 0; i < 20; i++) fresh.add((await api("/quota", { tenant: "x" })).headers.get("X-Request-ID")!);
    expect(fresh.size).toBe(20);
  });

  it("routes on the path alone: a query string is ignored, escapes and trailing slashes are not rewritten", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    expect((await api("/quota?x=1#frag", { tenant, token: s.access_token })).status).toBe(200);
    expect((await api("/quota/", { tenant, token: s.access_token })).status).toBe(404);
    expect((await api("/%71uota", { tenant, token: s.access_token })).status).toBe(404);
    expect((await api("/jobs/j_x/../../quota", { tenant, token: s.access_token })).status).toBe(200); // normalised by URL
  });

  it("ALLOWED_CLIENT_IDS limits the tenants (403 forbidden for others) and follows changes of the var", async () => {
    const req = (id: string) => new Request("http://worker.test/api/v1/quota", { headers: { "X-Client-ID": id } });
    const env = { ALLOWED_CLIENT_IDS: " app.one, app.two ,," } as Env;
    expect(tenantOf(req("app.two"), env)).toBe("app.two");
    expect(() => tenantOf(req("app.three"), env)).toThrow(expect.objectContaining({ status: 403, code: "forbidden" }));
    expect(tenantOf(req("app.three"), { ALLOWED_CLIENT_IDS: "app.three" } as Env)).toBe("app.three");
    expect(tenantOf(req("anything"), {} as Env)).toBe("anything");
  });

  it("every response carries a Date header (clients anchor token expiry to it)", async () => {
    for (const r of [await api("/quota", { tenant: freshTenant() }), await api("/nope", { tenant: "x" })]) {
      const date = r.headers.get("Date");
      expect(date).toMatch(/GMT$/);
      expect(Math.abs(Date.parse(date!) - Date.now())).toBeLessThan(60_000);
    }
  });

  it("404 not_found for unknown paths, 405 with Allow for a wrong method, JSON bodies", async () => {
    const nf = await api("/nope", { tenant: "x" });
    expect(nf.status).toBe(404);
    expect(((await nf.json()) as { error: { code: string } }).error.code).toBe("not_found");
    const na = await api("/quota", { method: "POST", tenant: "x" });
    expect(na.status).toBe(405);
    expect(na.headers.get("Allow")).toBe("GET");
  });

  it("logs one JSON line per request without tokens", async () => {
    const { vi } = await import("vitest");
    const spy = vi.spyOn(console, "log");
    const tenant = freshTenant();
    const s = await signIn(tenant);
    spy.mockClear();
    const r = await api("/quota", { tenant, token: s.access_token });
    const lines = spy.mock.calls.map((c) => String(c[0])).filter((l) => l.includes('"msg":"request"'));
    spy.mockRestore();
    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(entry).toMatchObject({ request_id: r.headers.get("X-Request-ID"), tenant, user_id: s.user.id, route: "quota", status: 200 });
    expect(typeof entry.duration_ms).toBe("number");
    expect("provider" in entry).toBe(true);
    expect(lines[0]).not.toContain(s.access_token.split(".")[2]!);
  });
});
