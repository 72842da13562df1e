// The quota headers (RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, X-Plan) on
// every answer to an authenticated request: successes, and errors of every kind,
// including a charged route refusing its input before anything is charged.
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:test";
import { api, jpeg, postJson, postMultipart, freshTenant, quota, signIn, uuid, type Part } from "./helpers";

type Auth = { tenant: string; token: string };

function expectQuotaHeaders(res: Response, want: { limit: number; remaining: number; plan?: string }) {
  expect(res.headers.get("RateLimit-Limit"), "RateLimit-Limit").toBe(String(want.limit));
  expect(res.headers.get("RateLimit-Remaining"), "RateLimit-Remaining").toBe(String(want.remaining));
  expect(res.headers.get("X-Plan"), "X-Plan").toBe(want.plan ?? "free");
  const reset = res.headers.get("RateLimit-Reset");
  expect(reset, "RateLimit-Reset").toMatch(/^\d+$/);
  expect(Number(reset)).toBeLessThanOrEqual(86400);
}

const codeOf = async (r: Response) => ((await r.json()) as { error: { code: string } }).error.code;
const chat = (text: string) => ({ messages: [{ role: "user", content: text }], stream: false, max_tokens: 32 });
const image = (bytes: Uint8Array, type = "image/jpeg"): Part => ({ name: "image", filename: "photo", type, bytes });

// Each case is refused by validation on a charged route, before the charge.
const refusedBeforeCharge: Array<[string, number, string, (a: Auth) => Promise<Response>]> = [
  ["chat: malformed JSON", 400, "bad_request", (a) => api("/chat", { method: "POST", ...a, key: uuid(), headers: { "Content-Type": "application/json" }, body: "{nope" })],
  ["chat: no body", 400, "bad_request", (a) => api("/chat", { method: "POST", ...a, key: uuid() })],
  ["chat: messages not an array", 400, "bad_request", (a) => postJson("/chat", { ...a, key: uuid() }, { messages: "hi" })],
  ["chat: no Idempotency-Key", 400, "bad_request", (a) => postJson("/chat", a, chat("hi"))],
  [
    "chat: body over 1 MiB",
    413,
    "payload_too_large",
    (a) => postJson("/chat", { ...a, key: uuid() }, { messages: [{ role: "user", content: "x".repeat(1024 * 1024) }] }),
  ],
  ["chat: text/plain body", 415, "unsupported_media_type", (a) => api("/chat", { method: "POST", ...a, key: uuid(), headers: { "Content-Type": "text/plain" }, body: "hi" })],
  ["chat: empty messages", 422, "invalid_input", (a) => postJson("/chat", { ...a, key: uuid() }, { messages: [] })],
  ["chat: max_tokens out of range", 422, "invalid_input", (a) => postJson("/chat", { ...a, key: uuid() }, { ...chat("hi"), max_tokens: 99999 })],
  ["detect: no image part", 400, "bad_request", (a) => postMultipart("/detect", { ...a, key: uuid() }, [{ name: "options", value: "{}" }])],
  [
    "detect: image over 10 MiB",
    413,
    "payload_too_large",
    async (a) => {
      const big = new Uint8Array(10 * 1024 * 1024 + 100 * 1024);
      big.set(jpeg(10, 10));
      return postMultipart("/detect", { ...a, key: uuid() }, [image(big)]);
    },
  ],
  ["detect: GIF", 415, "unsupported_media_type", (a) => postMultipart("/detect", { ...a, key: uuid() }, [image(new TextEncoder().encode("GIF89a...."), "image/gif")])],
  ["detect: JSON body", 415, "unsupported_media_type", (a) => postJson("/detect", { ...a, key: uuid() }, {})],
  ["detect: bad options", 422, "invalid_input", (a) => postMultipart("/detect", { ...a, key: uuid() }, [image(jpeg(20, 20)), { name: "options", value: '{"min_score":7}' }])],
  ["vision: no prompt", 400, "bad_request", (a) => postMultipart("/vision", { ...a, key: uuid() }, [image(jpeg(20, 20))])],
  ["vision: GIF", 415, "unsupported_media_type", (a) => postMultipart("/vision", { ...a, key: uuid() }, [image(new TextEncoder().encode("GIF89a...."), "image/gif"), { name: "prompt", value: "what?" }])],
  [
    "vision: undecodable image",
    422,
    "invalid_input",
    (a) => postMultipart("/vision", { ...a, key: uuid() }, [image(new Uint8Array([0xff, 0xd8, 0xff, 0xd9])), { name: "prompt", value: "what?" }]),
  ],
  ["images: no prompt", 400, "bad_request", (a) => postJson("/images", { ...a, key: uuid() }, { width: 512 })],
  ["jobs: input not an object", 400, "bad_request", (a) => postJson("/jobs", { ...a, key: uuid() }, { kind: "transcribe", input: 3 })],
  ["jobs: unknown kind", 422, "invalid_input", (a) => postJson("/jobs", { ...a, key: uuid() }, { kind: "summarize", input: {} })],
];

describe("quota headers on an authenticated request refused before the charge", () => {
  it.each(refusedBeforeCharge)("%s: %i with the headers, nothing charged", async (_name, status, code, send) => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const res = await send({ tenant, token: s.access_token });
    expect(res.status).toBe(status);
    expect(await codeOf(res)).toBe(code);
    expectQuotaHeaders(res, { limit: 50, remaining: 50 });
    expect((await quota(tenant, s.access_token)).remaining).toBe(50);
  });
});

describe("quota headers on other errors of authenticated requests", () => {
  it("422 idempotency_key_reused", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const key = uuid();
    expect((await postJson("/chat", { tenant, token: s.access_token, key }, chat("one"))).status).toBe(200);
    const r = await postJson("/chat", { tenant, token: s.access_token, key }, chat("two"));
    expect(r.status).toBe(422);
    expectQuotaHeaders(r, { limit: 50, remaining: 49 });
  });

  it("402 quota_exceeded; Date + RateLimit-Reset is the window's reset_at", async () => {
    const tenant = "app-small"; // TENANT_LIMITS: free limit 3
    const s = await signIn(tenant);
    for (let i = 0; i < 3; i++) expect((await postJson("/images", { tenant, token: s.access_token, key: uuid() }, { prompt: `p${i}`, width: 256, height: 256 })).status).toBe(200);
    const r = await postJson("/images", { tenant, token: s.access_token, key: uuid() }, { prompt: "more", width: 256, height: 256 });
    expect(r.status).toBe(402);
    expectQuotaHeaders(r, { limit: 3, remaining: 0 });
    const body = (await r.json()) as { error: { quota: { reset_at: string } } };
    const date = Date.parse(r.headers.get("Date")!);
    expect(date + Number(r.headers.get("RateLimit-Reset")) * 1000).toBe(Date.parse(body.error.quota.reset_at));
  });

  it("429 rate_limited, on a metered POST and on a GET", async () => {
    const tenant = "app-ratelimit"; // TENANT_LIMITS: 5 requests per minute
    const s = await signIn(tenant);
    let limited: Response | null = null;
    for (let i = 0; i < 7 && !limited; i++) {
      const r = await api("/quota", { tenant, token: s.access_token });
      if (r.status === 429) limited = r;
    }
    expect(limited).not.toBeNull();
    expectQuotaHeaders(limited!, { limit: 50, remaining: 50 });
    const m = await postJson("/chat", { tenant, token: s.access_token, key: uuid() }, chat("hi"));
    expect(m.status).toBe(429);
    expectQuotaHeaders(m, { limit: 50, remaining: 50 });
  });

  it("408 timeout (refunded)", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const r = await postJson("/chat", { tenant, token: s.access_token, key: uuid() }, chat("standin:slow please"));
    expect(r.status).toBe(408);
    expectQuotaHeaders(r, { limit: 50, remaining: 50 });
  });

  it("503 unavailable during a container cold start (refunded)", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const stub = env.STANDIN_DETECT!.get(env.STANDIN_DETECT!.idFromName(`detect:${tenant}`));
    await stub.fetch("http://standin/standin/sleep?cold_start_ms=1200");
    const r = await postMultipart("/detect", { tenant, token: s.access_token, key: uuid() }, [image(jpeg(30, 20))]);
    expect(r.status).toBe(503);
    expectQuotaHeaders(r, { limit: 50, remaining: 50 });
  });

  it("404 for another user's job", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const r = await api("/jobs/j_doesnotexist", { tenant, token: s.access_token });
    expect(r.status).toBe(404);
    expectQuotaHeaders(r, { limit: 50, remaining: 50 });
  });

  it("none on a 401: the caller is not known", async () => {
    const tenant = freshTenant();
    const r = await postJson("/chat", { tenant, token: "not.a.token", key: uuid() }, chat("hi"));
    expect(r.status).toBe(401);
    expect(r.headers.get("RateLimit-Limit")).toBeNull();
    expect(r.headers.get("X-Plan")).toBeNull();
  });
});
