// Multipart uploads: detect and vision, image headers, body limits, media
// types, boundary-independent idempotency, and the container cold start.
import { describe, expect, it } from "vitest";
import { env, runInDurableObject } from "cloudflare:test";
import { api, freshTenant, heic, jpeg, png, postMultipart, quota, signIn, uuid, webpExtended, webpLossless, webpLossy, type Part } from "./helpers";

type DetectBody = { objects: Array<{ label: string; score: number; box: number[] }>; model: string; image: { width: number; height: number } };
type ErrorBody = { error: { code: string; retry_after?: number; max_bytes?: number } };

const imagePart = (bytes: Uint8Array, type: string, filename = "photo"): Part => ({ name: "image", filename, type, bytes });

describe("detect", () => {
  it.each([
    ["png", "image/png", () => png(640, 480), [640, 480]],
    ["jpeg", "image/jpeg", async () => jpeg(1024, 768), [1024, 768]],
    ["webp lossy", "image/webp", async () => webpLossy(800, 600), [800, 600]],
    ["webp lossless", "image/webp", async () => webpLossless(321, 123), [321, 123]],
    ["webp extended", "image/webp", async () => webpExtended(4000, 3000), [4000, 3000]],
    ["heic", "image/heic", async () => heic(4032, 3024), [4032, 3024]],
  ] as const)("reads the real dimensions of a %s upload", async (_name, type, make, [w, h]) => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const res = await postMultipart("/detect", { tenant, token: s.access_token, key: uuid() }, [imagePart(await make(), type), { name: "options", value: '{"min_score":0.0,"max_objects":2}' }]);
    expect(res.status).toBe(200);
    expect(res.headers.get("X-Provider")).toBe("standin");
    const body = (await res.json()) as DetectBody;
    expect(body.image).toEqual({ width: w, height: h });
    expect(body.objects.length).toBeLessThanOrEqual(2);
    for (const o of body.objects) {
      expect(typeof o.label).toBe("string");
      expect(o.box).toHaveLength(4);
      for (const v of o.box) expect(v >= 0 && v <= 1).toBe(true);
      expect(o.box[0]! + o.box[2]!).toBeLessThanOrEqual(1);
      expect(o.box[1]! + o.box[3]!).toBeLessThanOrEqual(1);
    }
  });

  it("passes the request id on to the container", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const res = await postMultipart("/detect", { tenant, token: s.access_token, key: uuid() }, [imagePart(jpeg(10, 10), "image/jpeg")]);
    expect(res.status).toBe(200);
    const rid = res.headers.get("X-Request-ID");
    expect(rid).toMatch(/^req_/);
    const stub = env.STANDIN_DETECT!.get(env.STANDIN_DETECT!.idFromName(`detect:${tenant}`));
    const seen = await runInDurableObject(stub, (_o, state) => state.storage.kv.get<string>("lastRequestId"));
    expect(seen).toBe(rid);
  });

  it("a multipart retry with a new boundary but the same parts is replayed, not 422, charged once", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const key = uuid();
    const img = await png(64, 32);
    const parts: Part[] = [imagePart(img, "image/png", "a.png"), { name: "options", value: '{"min_score":0.1}' }];
    const a = await postMultipart("/detect", { tenant, token: s.access_token, key }, parts, "boundary-one-AAAA");
    expect(a.status).toBe(200);
    const b = await postMultipart("/detect", { tenant, token: s.access_token, key }, [...parts].reverse(), "a-completely-different-boundary-BBBB");
    expect(b.status).toBe(200);
    expect(b.headers.get("Idempotent-Replayed")).toBe("true");
    expect(await b.text()).toBe(await a.text());
    expect((await quota(tenant, s.access_token)).remaining).toBe(49);
    // Different image bytes under the same key: 422.
    const c = await postMultipart("/detect", { tenant, token: s.access_token, key }, [imagePart(await png(65, 32), "image/png", "a.png")]);
    expect(c.status).toBe(422);
    expect(((await c.json()) as ErrorBody).error.code).toBe("idempotency_key_reused");
  });

  it("415 for an image type that is not accepted, and for a non-multipart body", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const gif = new TextEncoder().encode("GIF89a....");
    const r = await postMultipart("/detect", { tenant, token: s.access_token, key: uuid() }, [imagePart(gif, "image/gif", "a.gif")]);
    expect(r.status).toBe(415);
    expect(((await r.json()) as ErrorBody).error.code).toBe("unsupported_media_type");
    const j = await api("/detect", { method: "POST", tenant, token: s.access_token, key: uuid(), headers: { "Content-Type": "application/json" }, body: "{}" });
    expect(j.status).toBe(415);
    expect((await quota(tenant, s.access_token)).remaining).toBe(50);
  });

  it("413 with max_bytes when Content-Length is over the limit", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const big = new Uint8Array(10 * 1024 * 1024 + 100 * 1024);
    big.set(jpeg(10, 10));
    const r = await postMultipart("/detect", { tenant, token: s.access_token, key: uuid() }, [imagePart(big, "image/jpeg")]);
    expect(r.status).toBe(413);
    const e = (await r.json()) as ErrorBody;
    expect(e.error.code).toBe("payload_too_large");
    expect(e.error.max_bytes).toBe(10 * 1024 * 1024 + 64 * 1024);
  });

  it("413 while streaming: a body without Content-Length is cut off at the limit, not read to the end", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    let sent = 0;
    const chunk = new Uint8Array(256 * 1024);
    const head = new TextEncoder().encode('--b\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\nContent-Type: image/jpeg\r\n\r\n');
    // An endless body: if the Worker read it all, this test would never end.
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(head);
      },
      pull(c) {
        sent += chunk.length;
        if (sent > 200 * 1024 * 1024) {
          c.close();
          return;
        }
        c.enqueue(chunk);
      },
    });
    const r = await api("/detect", { method: "POST", tenant, token: s.access_token, key: uuid(), headers: { "Content-Type": "multipart/form-data; boundary=b" }, body, duplex: "half" } as RequestInit);
    expect(r.status).toBe(413);
    expect(((await r.json()) as ErrorBody).error.max_bytes).toBe(10 * 1024 * 1024 + 64 * 1024);
    expect(sent).toBeLessThan(20 * 1024 * 1024);
  });

  it("cold start: 503 with Retry-After past the Worker's deadline, uncharged; the retry with the same key succeeds", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    // Put this tenant's (stand-in) container to sleep with a cold start longer than DETECT_DEADLINE_MS (400 ms).
    const stub = env.STANDIN_DETECT!.get(env.STANDIN_DETECT!.idFromName(`detect:${tenant}`));
    await stub.fetch("http://standin/standin/sleep?cold_start_ms=1200");
    const key = uuid();
    const parts = [imagePart(jpeg(300, 200), "image/jpeg")];
    const first = await postMultipart("/detect", { tenant, token: s.access_token, key }, parts);
    expect(first.status).toBe(503);
    const retryAfter = Number(first.headers.get("Retry-After"));
    expect(retryAfter).toBeGreaterThan(0);
    const e = (await first.json()) as ErrorBody;
    expect(e.error.code).toBe("unavailable");
    expect(e.error.retry_after).toBe(retryAfter);
    expect(first.headers.get("RateLimit-Remaining")).toBe("50");
    expect((await quota(tenant, s.access_token)).remaining).toBe(50);
    await new Promise((r) => setTimeout(r, 1000)); // the container keeps booting meanwhile
    const second = await postMultipart("/detect", { tenant, token: s.access_token, key }, parts);
    expect(second.status).toBe(200);
    expect(((await second.json()) as DetectBody).image).toEqual({ width: 300, height: 200 });
    expect((await quota(tenant, s.access_token)).remaining).toBe(49);
  });
});

describe("vision", () => {
  it("answers { response, model } from the image and prompt", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const res = await postMultipart("/vision", { tenant, token: s.access_token, key: uuid() }, [imagePart(webpLossy(200, 100), "image/webp"), { name: "prompt", value: "What is this?" }]);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { response: string; model: string };
    expect(body.response).toContain("200x100");
    expect(body.model).toBe("@cf/llava-hf/llava-1.5-7b-hf");
  });

  it("falls back to the OpenAI-compatible provider when the model fails", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const res = await postMultipart("/vision", { tenant, token: s.access_token, key: uuid() }, [imagePart(jpeg(20, 20), "image/jpeg"), { name: "prompt", value: "standin:fail describe" }]);
    expect(res.status).toBe(200);
    expect(res.headers.get("X-Provider")).toBe("fallback");
    expect(((await res.json()) as { response: string; provider: string })).toMatchObject({ response: "Fallback vision answer.", provider: "fallback" });
  });

  it("400 without a prompt part", async () => {
    const tenant = freshTenant();
    const s = await signIn(tenant);
    const res = await postMultipart("/vision", { tenant, token: s.access_token, key: uuid() }, [imagePart(jpeg(20, 20), "image/jpeg")]);
    expect(res.status).toBe(400);
  });
});
