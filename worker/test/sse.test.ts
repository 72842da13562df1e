// The SSE encoder on its own (keep-alives, error events), the broken-stream
// refund, and the idempotency lease takeover.
import { describe, expect, it } from "vitest";
import { env, runInDurableObject } from "cloudflare:test";
import { encodeChatStream, type ChatEvent } from "../src/sse";
import { freshTenant, parseSse, postJson, quota, signIn, uuid } from "./helpers";

async function* slow(): AsyncGenerator<ChatEvent> {
  await new Promise((r) => setTimeout(r, 250));
  yield { response: "late" };
}

async function* breaks(): AsyncGenerator<ChatEvent> {
  yield { response: "a" };
  throw new Error("boom");
}

describe("SSE encoding", () => {
  it("sends ': keep-alive' comments while the model is silent, then the data and [DONE]", async () => {
    const s = encodeChatStream([{ response: "first" }], slow(), 50, () => ({ code: "upstream", message: "x" }));
    const text = await new Response(s).text();
    const { events, comments } = parseSse(text);
    expect(comments.filter((c) => c === "keep-alive").length).toBeGreaterThanOrEqual(2);
    expect(events.map((e) => e.data)).toEqual(['{"response":"first"}', '{"response":"late"}', "[DONE]"]);
  });

  it("ends a broken source with an `event: error` in the error body shape and no [DONE]", async () => {
    const s = encodeChatStream([], breaks(), 1000, () => ({ code: "upstream", message: "The model stream broke off" }));
    const { events } = parseSse(await new Response(s).text());
    expect(events.at(-1)!.event).toBe("error");
    expect(JSON.parse(events.at(-1)!.data)).toEqual({ error: { code: "upstream", message: "The model stream broke off" } });
    expect(events.some((e) => e.data === "[DONE]")).toBe(false);
  });

  it("a stream that breaks mid-way is refunded and not stored: the retry runs again", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const key = uuid();
    const body = { messages: [{ role: "user", content: "standin:break one two three four five" }], stream: true };
    const r = await postJson("/chat", { tenant, token: s.access_token, key }, body);
    expect(r.status).toBe(200);
    const { events } = parseSse(await r.text());
    expect(events.at(-1)!.event).toBe("error");
    let remaining = 0;
    for (let i = 0; i < 50 && remaining !== 50; i++) {
      remaining = (await quota(tenant, s.access_token)).remaining;
      if (remaining !== 50) await new Promise((res) => setTimeout(res, 50));
    }
    expect(remaining).toBe(50);
    const again = await postJson("/chat", { tenant, token: s.access_token, key }, body);
    expect(again.status).toBe(200);
    expect(again.headers.get("Idempotent-Replayed")).toBeNull();
    await again.text();
  });
});

describe("idempotency lease", () => {
  it("a running record whose worker vanished is taken over after its lease, without a second charge", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const key = uuid();
    const body = { prompt: "lease", width: 256, height: 256 };
    const first = await postJson("/images", { tenant, token: s.access_token, key }, body);
    expect(first.status).toBe(200);
    // Turn the stored record back into a "running" one whose lease has expired, as if the worker died.
    const stub = env.USER_STATE.get(env.USER_STATE.idFromName(`${tenant}|${s.user.id}`));
    await runInDurableObject(stub, (_o, state) => {
      const rec = state.storage.kv.get<Record<string, unknown>>(`idem:${key}`)!;
      state.storage.kv.put(`idem:${key}`, { ...rec, state: "running", leaseUntil: Date.now() - 1 });
    });
    const retry = await postJson("/images", { tenant, token: s.access_token, key }, body);
    expect(retry.status).toBe(200);
    expect(retry.headers.get("Idempotent-Replayed")).toBeNull();
    expect((await quota(tenant, s.access_token)).remaining).toBe(49);
  });
});
