// The operator surface (/admin/): off by default, token-gated, and the purchase
// flow it exists for (402 -> plan raised -> the same request succeeds).
import { createExecutionContext, env, SELF, waitOnExecutionContext } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import worker from "../src/index";
import { api, freshTenant, postJson, quota, signIn, uuid } from "./helpers";

type ErrorBody = { error: { code: string; message: string; plan_required?: string; quota?: Record<string, unknown> } };
type PlanAnswer = { user_id: string; plan: string; limit: number; remaining: number; reset_at: string };

const ADMIN_TOKEN = "test-admin-token-0123456789abcdef-xyz"; // >= 32 characters
const chat = (text: string) => ({ messages: [{ role: "user", content: text }], stream: false, max_tokens: 16 });

/**
 * One admin request straight into the Worker's fetch with ADMIN_TOKEN set (the vitest
 * config leaves it unset, as production does by default). Same bindings as SELF, so
 * the user's Durable Object and D1 rows are the ones the public requests see.
 */
async function admin(
  path: string,
  opts: { token?: string | null; tenant?: string; body?: unknown; method?: string; adminToken?: string; headers?: Record<string, string> } = {},
): Promise<Response> {
  const headers = new Headers(opts.headers);
  if (opts.tenant !== undefined) headers.set("X-Client-ID", opts.tenant);
  const token = opts.token === undefined ? ADMIN_TOKEN : opts.token;
  if (token !== null) headers.set("Authorization", `Bearer ${token}`);
  const method = opts.method ?? "POST";
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers.set("Content-Type", "application/json");
    body = typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
  }
  const req = new Request(`http://worker.test${path}`, { method, headers, body });
  const ctx = createExecutionContext();
  const res = await worker.fetch(req, { ...env, ADMIN_TOKEN: opts.adminToken ?? ADMIN_TOKEN }, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

const planPath = (userId: string) => `/admin/v1/users/${encodeURIComponent(userId)}/plan`;

afterEach(() => vi.restoreAllMocks());

describe("admin surface gate", () => {
  it("is off by default: /admin/ paths answer 404 not_found like an unknown path, token or not", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const variants: Record<string, string>[] = [{ "X-Client-ID": tenant }, { "X-Client-ID": tenant, Authorization: `Bearer ${ADMIN_TOKEN}` }];
    for (const headers of variants) {
      const r = await SELF.fetch(`http://worker.test${planPath(s.user.id)}`, {
        method: "POST",
        headers: { ...headers, "Content-Type": "application/json" },
        body: JSON.stringify({ plan: "pro" }),
      });
      expect(r.status).toBe(404);
      expect(((await r.json()) as ErrorBody).error.code).toBe("not_found");
    }
    // GET too (no 405 telling the route exists).
    expect((await SELF.fetch(`http://worker.test${planPath(s.user.id)}`, { headers: { "X-Client-ID": tenant } })).status).toBe(404);
    expect((await quota(tenant, s.access_token)).plan).toBe("free");
  });

  it("stays off with an empty, blank or too short ADMIN_TOKEN, even when that exact value is presented", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    for (const configured of ["", "   ", "short-admin-token"]) {
      const r = await admin(planPath(s.user.id), { tenant, body: { plan: "pro" }, adminToken: configured, token: configured.trim() || "x" });
      expect(r.status).toBe(404);
      expect(((await r.json()) as ErrorBody).error.code).toBe("not_found");
    }
    expect((await quota(tenant, s.access_token)).plan).toBe("free");
  });

  it("answers 401 invalid_token to a missing, wrong or differently-schemed token, and changes nothing", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const missing = await admin(planPath(s.user.id), { tenant, body: { plan: "pro" }, token: null });
    expect(missing.status).toBe(401);
    expect(missing.headers.get("WWW-Authenticate")).toBe('Bearer realm="tether-admin"');
    expect(((await missing.json()) as ErrorBody).error.code).toBe("invalid_token");
    for (const token of [`${ADMIN_TOKEN}x`, ADMIN_TOKEN.slice(0, -1), ADMIN_TOKEN.toUpperCase(), s.access_token]) {
      const r = await admin(planPath(s.user.id), { tenant, body: { plan: "pro" }, token });
      expect(r.status).toBe(401);
      expect(r.headers.get("WWW-Authenticate")).toBe('Bearer realm="tether-admin", error="invalid_token"');
      expect(((await r.json()) as ErrorBody).error.code).toBe("invalid_token");
    }
    const basic = await admin(planPath(s.user.id), { tenant, body: { plan: "pro" }, token: null, headers: { Authorization: `Basic ${btoa(`admin:${ADMIN_TOKEN}`)}` } });
    expect(basic.status).toBe(401);
    // The token is checked before the route: an unknown admin path does not tell itself apart.
    expect((await admin("/admin/v1/nothing-here", { tenant, token: "wrong" })).status).toBe(401);
    expect((await quota(tenant, s.access_token)).plan).toBe("free");
  });
});

describe("POST /admin/v1/users/{user_id}/plan", () => {
  it("raising the plan lifts a spent free quota: the request that got 402 succeeds on retry with X-Plan pro", async () => {
    const tenant = "app-small"; // TENANT_LIMITS: free limit 3
    const s = await signIn(tenant);
    const who = { tenant, token: s.access_token };
    for (let i = 0; i < 3; i++) expect((await postJson("/chat", { ...who, key: uuid() }, chat(`m${i}`))).status).toBe(200);
    const key = uuid();
    const paywalled = await postJson("/chat", { ...who, key }, chat("one more"));
    expect(paywalled.status).toBe(402);
    expect(((await paywalled.json()) as ErrorBody).error.plan_required).toBe("pro");

    const r = await admin(planPath(s.user.id), { tenant, body: { plan: "pro" } });
    expect(r.status).toBe(200);
    expect(r.headers.get("Cache-Control")).toBe("no-store");
    const a = (await r.json()) as PlanAnswer;
    expect(a).toMatchObject({ user_id: s.user.id, plan: "pro", limit: 5000, remaining: 4997 });
    expect(a.reset_at).toMatch(/^\d{4}-\d\d-\d\dT00:00:00Z$/);
    expect(Object.keys(a).sort()).toEqual(["limit", "plan", "remaining", "reset_at", "user_id"]);

    // What the app does after the purchase: GET /quota, and the paywall lifts.
    const q = await api("/quota", who);
    expect(q.headers.get("X-Plan")).toBe("pro");
    expect(q.headers.get("RateLimit-Limit")).toBe("5000");
    expect(await q.json()).toMatchObject({ plan: "pro", limit: 5000, remaining: 4997, reset_at: a.reset_at });

    // The 402 was not stored, so the retry with the same key runs (and is charged) now.
    const retried = await postJson("/chat", { ...who, key }, chat("one more"));
    expect(retried.status).toBe(200);
    expect(retried.headers.get("Idempotent-Replayed")).toBeNull();
    expect(retried.headers.get("X-Plan")).toBe("pro");
    expect(retried.headers.get("RateLimit-Limit")).toBe("5000");
    expect(retried.headers.get("RateLimit-Remaining")).toBe("4996");
  });

  it("lowering the plan back to free brings the paywall back for the rest of the window", async () => {
    const tenant = "app-small";
    const s = await signIn(tenant);
    const who = { tenant, token: s.access_token };
    expect((await admin(planPath(s.user.id), { tenant, body: { plan: "pro" } })).status).toBe(200);
    for (let i = 0; i < 4; i++) expect((await postJson("/chat", { ...who, key: uuid() }, chat(`p${i}`))).status).toBe(200);

    const r = await admin(planPath(s.user.id), { tenant, body: { plan: "free" } });
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ user_id: s.user.id, plan: "free", limit: 3, remaining: 0 });
    const after = await postJson("/chat", { ...who, key: uuid() }, chat("again"));
    expect(after.status).toBe(402);
    expect(after.headers.get("X-Plan")).toBe("free");
    expect(((await after.json()) as ErrorBody).error.quota).toMatchObject({ plan: "free", limit: 3, remaining: 0 });
    // Setting the plan it already has is fine (a purchase backend may retry).
    expect(await (await admin(planPath(s.user.id), { tenant, body: { plan: "free" } })).json()).toMatchObject({ plan: "free" });
  });

  it("refuses bad input: unknown plan 422, missing plan 400, unknown user or other tenant 404, no X-Client-ID 400, GET 405", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const path = planPath(s.user.id);

    const unknown = await admin(path, { tenant, body: { plan: "enterprise" } });
    expect(unknown.status).toBe(422);
    expect(((await unknown.json()) as ErrorBody).error.code).toBe("invalid_input");
    for (const body of [{}, { plan: 1 }, "not json"]) {
      const r = await admin(path, { tenant, body });
      expect(r.status).toBe(400);
      expect(((await r.json()) as ErrorBody).error.code).toBe("bad_request");
    }
    expect((await admin(planPath("u_doesnotexist"), { tenant, body: { plan: "pro" } })).status).toBe(404);
    // The user belongs to its tenant: the same id under another X-Client-ID is unknown.
    expect((await admin(path, { tenant: freshTenant(), body: { plan: "pro" } })).status).toBe(404);
    const noTenant = await admin(path, { body: { plan: "pro" } });
    expect(noTenant.status).toBe(400);
    const get = await admin(path, { tenant, method: "GET" });
    expect(get.status).toBe(405);
    expect(get.headers.get("Allow")).toBe("POST");
    expect((await quota(tenant, s.access_token)).plan).toBe("free");
  });

  it("never logs the admin token (nor a wrong one), and logs one plan_set audit line", async () => {
    const spy = vi.spyOn(console, "log");
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const wrong = "wrong-admin-token-presented-by-a-prober-123";
    const short = "short-admin-token";
    expect((await admin(planPath(s.user.id), { tenant, body: { plan: "pro" }, token: wrong })).status).toBe(401);
    expect((await admin(planPath(s.user.id), { tenant, body: { plan: "pro" }, adminToken: short, token: short })).status).toBe(404);
    expect((await admin(planPath(s.user.id), { tenant, body: { plan: "enterprise" } })).status).toBe(422);
    const ok = await admin(planPath(s.user.id), { tenant, body: { plan: "pro" } });
    expect(ok.status).toBe(200);
    const lines = spy.mock.calls.map((c) => c.map(String).join(" "));
    expect(lines.length).toBeGreaterThanOrEqual(5);
    for (const l of lines) {
      expect(l).not.toContain(ADMIN_TOKEN);
      expect(l).not.toContain(wrong);
      expect(l).not.toContain(short);
    }
    const audit = lines.filter((l) => l.includes('"msg":"plan_set"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ tenant, user_id: s.user.id, previous: "free", plan: "pro", request_id: ok.headers.get("X-Request-ID") });
    const req = lines.filter((l) => l.includes('"msg":"request"') && l.includes('"route":"admin.plan"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(req.some((e) => e.status === 200 && e.user_id === s.user.id)).toBe(true);
    expect(lines.some((l) => l.includes('"msg":"admin_off"'))).toBe(true);
  });
});
