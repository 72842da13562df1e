// Chat (SSE and JSON), image generation, the fallback provider, the model
// deadline, and work that finishes after the client went away.
import { describe, expect, it } from "vitest";
import { freshTenant, parseSse, postJson, quota, signIn, uuid } from "./helpers";
import { imageInfo } from "../src/imageinfo";
import { standinImage } from "../src/standin/ai";

type ErrorBody = { error: { code: string; retry_after?: number } };
const chat = (text: string, stream: boolean) => ({
  messages: [
    { role: "system", content: "Be brief." },
    { role: "user", content: text },
  ],
  model: "@cf/meta/llama-3.1-8b-instruct",
  stream,
  max_tokens: 128,
});

describe("chat", () => {
  it("streams in the Workers AI SSE shape, ending with usage and [DONE]", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const res = await postJson("/chat", { tenant, token: s.access_token, key: uuid() }, chat("tell me something", true));
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toMatch(/^text\/event-stream/);
    expect(res.headers.get("X-Provider")).toBe("standin");
    expect(res.headers.get("RateLimit-Remaining")).toBe("49");
    const { events } = parseSse(await res.text()); // keep-alive comments, if any, are allowed and ignored
    expect(events.at(-1)!.data).toBe("[DONE]");
    const payloads = events.slice(0, -1).map((e) => JSON.parse(e.data) as { response: string; usage?: { prompt_tokens: number; completion_tokens: number } });
    expect(payloads.length).toBeGreaterThan(3);
    for (const p of payloads) expect(typeof p.response).toBe("string");
    const last = payloads.at(-1)!;
    expect(last.response).toBe("");
    expect(last.usage!.completion_tokens).toBeGreaterThan(0);
    expect(payloads.map((p) => p.response).join("")).toContain("tell me something");
  });

  it('answers {"response", "usage"} with stream:false', async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const res = await postJson("/chat", { tenant, token: s.access_token, key: uuid() }, chat("hello", false));
    expect(res.status).toBe(200);
    const body = (await res.json()) as { response: string; usage: { prompt_tokens: number; completion_tokens: number } };
    expect(body.response).toContain("hello");
    expect(body.usage.completion_tokens).toBeGreaterThan(0);
  });

  it.each(["standin:fail", "standin:empty"])("falls back to the OpenAI-compatible endpoint when the model gives nothing usable (%s)", async (trigger) => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const res = await postJson("/chat", { tenant, token: s.access_token, key: uuid() }, chat(`${trigger} hi`, true));
    expect(res.status).toBe(200);
    expect(res.headers.get("X-Provider")).toBe("fallback");
    const { events } = parseSse(await res.text());
    expect(events.at(-1)!.data).toBe("[DONE]");
    const text = events.slice(0, -1).map((e) => (JSON.parse(e.data) as { response: string }).response).join("");
    expect(text).toBe("Fallback says hello.");
    const plain = await postJson("/chat", { tenant, token: s.access_token, key: uuid() }, chat(`${trigger} again`, false));
    expect(((await plain.json()) as { provider: string; response: string })).toMatchObject({ provider: "fallback", response: "Fallback says hello." });
  });

  it("408 timeout with Retry-After when the model runs past the Worker's deadline; uncharged", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const res = await postJson("/chat", { tenant, token: s.access_token, key: uuid() }, chat("standin:slow please", true));
    expect(res.status).toBe(408);
    expect(Number(res.headers.get("Retry-After"))).toBeGreaterThan(0);
    expect(((await res.json()) as ErrorBody).error.code).toBe("timeout");
    expect((await quota(tenant, s.access_token)).remaining).toBe(50);
  });

  it("validates the body: 400 malformed, 422 invalid, 415 wrong type", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const auth = { tenant, token: s.access_token };
    expect((await postJson("/chat", { ...auth, key: uuid() }, { messages: "nope" })).status).toBe(400);
    expect((await postJson("/chat", { ...auth, key: uuid() }, { messages: [] })).status).toBe(422);
    expect((await postJson("/chat", { ...auth, key: uuid() }, { messages: [{ role: "robot", content: "x" }] })).status).toBe(422);
    const { api } = await import("./helpers");
    const bad = await api("/chat", { method: "POST", ...auth, key: uuid(), headers: { "Content-Type": "application/json" }, body: "{not json" });
    expect(bad.status).toBe(400);
    const txt = await api("/chat", { method: "POST", ...auth, key: uuid(), headers: { "Content-Type": "text/plain" }, body: "hi" });
    expect(txt.status).toBe(415);
    const huge = await api("/chat", { method: "POST", ...auth, key: uuid(), headers: { "Content-Type": "application/json" }, body: JSON.stringify({ messages: [{ role: "user", content: "x".repeat(1024 * 1024) }] }) });
    expect(huge.status).toBe(413);
    expect(((await huge.json()) as { error: { max_bytes: number } }).error.max_bytes).toBe(1024 * 1024);
    expect((await quota(tenant, s.access_token)).remaining).toBe(50);
  });

  it("charged work finishes and is stored even if the client disconnects; the retry gets it", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const key = uuid();
    const body = chat("a long answer that takes a while to stream word by word", true);
    const first = await postJson("/chat", { tenant, token: s.access_token, key }, body);
    expect(first.status).toBe(200);
    const reader = first.body!.getReader();
    await reader.read(); // one chunk, then the client "times out"
    await reader.cancel();
    // The retry joins or replays; either way it gets the whole stream and no second charge.
    const retry = await postJson("/chat", { tenant, token: s.access_token, key }, body);
    expect(retry.status).toBe(200);
    const { events } = parseSse(await retry.text());
    expect(events.at(-1)!.data).toBe("[DONE]");
    expect((await quota(tenant, s.access_token)).remaining).toBe(49);
  });
});

describe("images", () => {
  it("answers a base64 PNG of the clamped size", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const res = await postJson("/images", { tenant, token: s.access_token, key: uuid() }, { prompt: "a lighthouse", width: 100, height: 300 });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { image: string; model: string };
    expect(body.model).toBe("@cf/black-forest-labs/flux-1-schnell");
    const bytes = Uint8Array.from(atob(body.image), (c) => c.charCodeAt(0));
    expect(imageInfo(bytes)).toEqual({ format: "png", width: 256, height: 300 });
  });

  it("converts the model's JPEG (Flux answers JPEG at its own size) into that PNG", async () => {
    const raw = await standinImage("a lighthouse", 0);
    expect(imageInfo(Uint8Array.from(atob(raw), (c) => c.charCodeAt(0)))).toEqual({ format: "jpeg", width: 64, height: 48 });
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const res = await postJson("/images", { tenant, token: s.access_token, key: uuid() }, { prompt: "a lighthouse", width: 1024, height: 768 });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { image: string };
    expect(imageInfo(Uint8Array.from(atob(body.image), (c) => c.charCodeAt(0)))).toEqual({ format: "png", width: 1024, height: 768 });
  });

  it("falls back when the model fails", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const res = await postJson("/images", { tenant, token: s.access_token, key: uuid() }, { prompt: "standin:fail a cat" });
    expect(res.status).toBe(200);
    expect(res.headers.get("X-Provider")).toBe("fallback");
    const body = (await res.json()) as { image: string; provider: string };
    expect(body.provider).toBe("fallback");
    expect(imageInfo(Uint8Array.from(atob(body.image), (c) => c.charCodeAt(0)))?.format).toBe("png");
  });

  it("400 without a prompt", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    expect((await postJson("/images", { tenant, token: s.access_token, key: uuid() }, { width: 512 })).status).toBe(400);
  });
});
