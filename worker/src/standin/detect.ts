// STAND-IN for the detect Container (DETECT_MODE="standin"). Containers
// cannot run offline, so this Durable Object plays the container: same HTTP
// interface (POST /detect, raw image bytes, X-Detect-Options, X-Request-ID),
// same lifecycle (asleep -> cold start -> awake until sleepAfter idle).
// It reads the real image size from the uploaded bytes and returns
// deterministic boxes derived from a hash of them.
import { DurableObject } from "cloudflare:workers";
import { config } from "../config";
import type { Env } from "../env";
import { imageInfo } from "../imageinfo";
import { sleep } from "../util";

const LABELS = ["person", "cat", "dog", "car", "bicycle", "cup", "chair", "bottle", "laptop", "book"];

interface Life {
  awakeUntil: number; // ms
  bootingUntil: number; // ms
  coldStartMs?: number; // per-instance override (tests)
}

export class StandinDetect extends DurableObject<Env> {
  override async fetch(req: Request): Promise<Response> {
    const url = new URL(req.url);
    if (url.pathname === "/standin/sleep") {
      // Test hook: put this instance to sleep, optionally with its own cold-start time.
      const ms = url.searchParams.get("cold_start_ms");
      this.ctx.storage.kv.put("life", { awakeUntil: 0, bootingUntil: 0, ...(ms ? { coldStartMs: Number(ms) } : {}) } satisfies Life);
      return new Response(null, { status: 204 });
    }
    if (url.pathname !== "/detect" || req.method !== "POST") return new Response("not found", { status: 404 });

    // Kept so tests can check that the request id reaches the container.
    this.ctx.storage.kv.put("lastRequestId", req.headers.get("X-Request-ID") ?? "");
    await this.wake();
    const bytes = new Uint8Array(await req.arrayBuffer());
    const info = imageInfo(bytes);
    if (!info) return Response.json({ error: "cannot read image header" }, { status: 422 });
    let opts: { min_score?: number; max_objects?: number } = {};
    try {
      opts = JSON.parse(req.headers.get("X-Detect-Options") ?? "{}");
    } catch {
      /* defaults */
    }
    const minScore = opts.min_score ?? 0.25;
    const maxObjects = opts.max_objects ?? 20;
    const h = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    const objects = [];
    const count = 1 + (h[0]! % 3);
    for (let i = 0; i < count; i++) {
      const b = (k: number) => h[(i * 6 + k) % 32]! / 255;
      const x = round(b(1) * 0.5);
      const y = round(b(2) * 0.5);
      const score = round(0.3 + b(5) * 0.69);
      if (score < minScore) continue;
      objects.push({ label: LABELS[h[i * 6 + 3]! % LABELS.length]!, score, box: [x, y, round(0.1 + b(3) * (0.9 - x)), round(0.1 + b(4) * (0.9 - y))] });
    }
    objects.sort((a, z) => z.score - a.score);
    return Response.json({
      objects: objects.slice(0, maxObjects),
      model: "standin-detect",
      image: { width: info.width, height: info.height },
    });
  }

  /** Models a container's cold start: the first request after sleep waits for the boot. */
  private async wake(): Promise<void> {
    const now = Date.now();
    const life = this.ctx.storage.kv.get<Life>("life") ?? { awakeUntil: 0, bootingUntil: 0 };
    let readyAt = now;
    if (life.awakeUntil <= now) {
      if (life.bootingUntil <= now) {
        life.bootingUntil = now + (life.coldStartMs ?? config.standinColdStartMs(this.env));
      }
      readyAt = life.bootingUntil;
    }
    life.awakeUntil = Math.max(readyAt, now) + config.standinSleepAfterMs(this.env);
    this.ctx.storage.kv.put("life", life);
    if (readyAt > now) await sleep(readyAt - now);
  }
}

const round = (n: number) => Math.round(n * 1000) / 1000;
