// UserState: one Durable Object per (tenant, user). It owns everything that
// must be strongly consistent for a user: the quota counter, the per-minute
// rate limit and the idempotency records. All decisions are made with
// synchronous storage calls (no await between read and write), so concurrent
// requests are serialised by the object: a key is charged once, and quota
// runs out exactly at the limit.
import { DurableObject } from "cloudflare:workers";
import type { Env } from "./env";
import type { Limits } from "./config";
import { isoSeconds } from "./util";

/** The plans a user can hold; the admin route refuses anything else. */
export const PLANS = ["free", "pro"] as const;
export type Plan = (typeof PLANS)[number];
export const isPlan = (p: unknown): p is Plan => typeof p === "string" && (PLANS as readonly string[]).includes(p);

export interface QuotaSnapshot {
  plan: string;
  limit: number;
  remaining: number;
  reset_at: string;
  reset_in: number; // seconds until the window resets (RateLimit-Reset)
}

export interface StoredResponse {
  status: number;
  contentType: string;
  headers: Record<string, string>; // extra headers worth replaying (X-Provider)
  body: string; // UTF-8 text (JSON or the full SSE transcript)
}

interface IdemRecord {
  fp: string;
  state: "running" | "done";
  leaseUntil: number; // ms; a running record past its lease is taken over
  expiresAt: number; // ms; 24 h after creation
  chargedWindow: number; // window start (s) the charge was counted in
  chunks: number; // number of body chunks when done
  status?: number;
  contentType?: string;
  headers?: Record<string, string>;
}

export type BeginResult =
  | { kind: "proceed"; quota: QuotaSnapshot }
  | { kind: "replay"; response: StoredResponse; quota: QuotaSnapshot }
  | { kind: "in_progress"; quota: QuotaSnapshot }
  | { kind: "mismatch"; quota: QuotaSnapshot }
  | { kind: "quota_exceeded"; quota: QuotaSnapshot }
  | { kind: "rate_limited"; retryAfter: number; quota: QuotaSnapshot };

export type TouchResult =
  | { kind: "ok"; quota: QuotaSnapshot }
  | { kind: "rate_limited"; retryAfter: number; quota: QuotaSnapshot };

const IDEM_TTL_MS = 24 * 3600 * 1000;
// Values in SQLite-backed Durable Object storage are capped at 2 MB; bodies
// are split into chunks well below that.
const CHUNK_CHARS = 512 * 1024;

export class UserState extends DurableObject<Env> {
  // Waiters for a key that is still running (same object instance = same
  // memory, so this is safe; a waiter that times out just asks again).
  private waiters = new Map<string, Array<() => void>>();
  // The per-minute request counter lives in memory: this object is the one
  // authoritative instance for its user, and losing the count when it is evicted
  // (idle, restart) only restarts a one-minute window. Persisting it cost a storage
  // write on every authenticated request (measured: quota CPU 0.52 -> 0.45 ms).
  private rl = { minute: 0, count: 0 };

  private get kv() {
    return this.ctx.storage.kv;
  }

  private plan(): string {
    return this.kv.get<string>("plan") ?? "free";
  }

  private usage(limits: Limits, nowSec: number): { windowStart: number; used: number } {
    const windowStart = nowSec - (nowSec % limits.quotaWindowSeconds);
    const q = this.kv.get<{ windowStart: number; used: number }>("quota");
    if (!q || q.windowStart !== windowStart) return { windowStart, used: 0 };
    return q;
  }

  private snapshot(limits: Limits, nowSec: number): QuotaSnapshot {
    const plan = this.plan();
    const limit = plan === "pro" ? limits.quotaLimitPro : limits.quotaLimitFree;
    const { windowStart, used } = this.usage(limits, nowSec);
    const resetAt = windowStart + limits.quotaWindowSeconds;
    return {
      plan,
      limit,
      remaining: Math.max(0, limit - used),
      reset_at: isoSeconds(resetAt),
      reset_in: Math.max(0, resetAt - nowSec),
    };
  }

  /** Counts one request against the per-minute limit; returns seconds to wait when over it. */
  private hit(limits: Limits, nowSec: number): number | null {
    if (limits.rateLimitPerMinute <= 0) return null; // 0 disables the limit
    const minute = nowSec - (nowSec % 60);
    const count = this.rl.minute === minute ? this.rl.count : 0;
    if (count >= limits.rateLimitPerMinute) return Math.max(1, minute + 60 - nowSec);
    this.rl = { minute, count: count + 1 };
    return null;
  }

  touch(limits: Limits, nowMs: number): TouchResult {
    const nowSec = Math.floor(nowMs / 1000);
    const wait = this.hit(limits, nowSec);
    const quota = this.snapshot(limits, nowSec);
    return wait === null ? { kind: "ok", quota } : { kind: "rate_limited", retryAfter: wait, quota };
  }

  quota(limits: Limits, nowMs: number): QuotaSnapshot {
    return this.snapshot(limits, Math.floor(nowMs / 1000));
  }

  /**
   * Sets the user's plan (the backend's purchase flow, through the admin route) and
   * answers the quota under it, read in the same synchronous step so the answer is
   * what the user's next request sees. The window's usage is kept: raising the plan
   * lifts a spent free quota to the pro limit minus what was used, lowering it back
   * can leave nothing remaining.
   */
  setPlan(plan: Plan, limits: Limits, nowMs: number): { previous: string; quota: QuotaSnapshot } {
    const previous = this.plan();
    if (plan === "free") this.kv.delete("plan"); // free is the default: no row to keep
    else this.kv.put("plan", plan);
    return { previous, quota: this.snapshot(limits, Math.floor(nowMs / 1000)) };
  }

  /**
   * The single decision point of a metered request: rate limit, then the
   * idempotency record, then the charge. A request that proceeds has been
   * charged already (reserved); abort() gives the charge back.
   */
  begin(args: { key: string; fp: string; limits: Limits; nowMs: number; leaseMs: number; countRate: boolean }): BeginResult {
    const nowSec = Math.floor(args.nowMs / 1000);
    if (args.countRate) {
      const wait = this.hit(args.limits, nowSec);
      if (wait !== null) return { kind: "rate_limited", retryAfter: wait, quota: this.snapshot(args.limits, nowSec) };
    }
    const recKey = `idem:${args.key}`;
    let rec = this.kv.get<IdemRecord>(recKey);
    if (rec && rec.expiresAt <= args.nowMs) {
      this.deleteRecord(args.key, rec);
      rec = undefined;
    }
    if (rec) {
      const quota = this.snapshot(args.limits, nowSec);
      if (rec.fp !== args.fp) return { kind: "mismatch", quota };
      if (rec.state === "done") return { kind: "replay", response: this.readResponse(args.key, rec), quota };
      if (rec.leaseUntil > args.nowMs) return { kind: "in_progress", quota };
      // The first attempt died without finishing (isolate lost): take it
      // over. It was charged already, so no second charge.
      rec.leaseUntil = args.nowMs + args.leaseMs;
      this.kv.put(recKey, rec);
      return { kind: "proceed", quota };
    }
    const usage = this.usage(args.limits, nowSec);
    const snap = this.snapshot(args.limits, nowSec);
    if (snap.remaining <= 0) return { kind: "quota_exceeded", quota: snap };
    this.kv.put("quota", { windowStart: usage.windowStart, used: usage.used + 1 });
    this.kv.put(recKey, {
      fp: args.fp,
      state: "running",
      leaseUntil: args.nowMs + args.leaseMs,
      expiresAt: args.nowMs + IDEM_TTL_MS,
      chargedWindow: usage.windowStart,
      chunks: 0,
    } satisfies IdemRecord);
    this.scheduleSweep(args.nowMs);
    return { kind: "proceed", quota: this.snapshot(args.limits, nowSec) };
  }

  /** Stores the response of a charged request for replay. */
  complete(key: string, fp: string, response: StoredResponse): void {
    const recKey = `idem:${key}`;
    const rec = this.kv.get<IdemRecord>(recKey);
    if (!rec || rec.fp !== fp) return;
    const chunks = Math.max(1, Math.ceil(response.body.length / CHUNK_CHARS));
    for (let i = 0; i < chunks; i++) this.kv.put(`body:${key}:${i}`, response.body.slice(i * CHUNK_CHARS, (i + 1) * CHUNK_CHARS));
    rec.state = "done";
    rec.chunks = chunks;
    rec.status = response.status;
    rec.contentType = response.contentType;
    rec.headers = response.headers;
    this.kv.put(recKey, rec);
    this.wake(key);
  }

  /** The work failed without being delivered: refund the charge and forget the key, so a retry runs afresh. */
  abort(key: string, fp: string, limits: Limits, nowMs: number): QuotaSnapshot {
    const snap = () => this.snapshot(limits, Math.floor(nowMs / 1000));
    const recKey = `idem:${key}`;
    const rec = this.kv.get<IdemRecord>(recKey);
    if (!rec || rec.fp !== fp || rec.state !== "running") return snap();
    const q = this.kv.get<{ windowStart: number; used: number }>("quota");
    if (q && q.windowStart === rec.chargedWindow && q.used > 0) this.kv.put("quota", { windowStart: q.windowStart, used: q.used - 1 });
    this.kv.delete(recKey);
    this.wake(key);
    return snap();
  }

  /** Resolves when the running request for `key` finishes or aborts, or after timeoutMs. */
  async wait(key: string, timeoutMs: number): Promise<void> {
    const rec = this.kv.get<IdemRecord>(`idem:${key}`);
    if (!rec || rec.state !== "running") return;
    await new Promise<void>((resolve) => {
      const list = this.waiters.get(key) ?? [];
      list.push(resolve);
      this.waiters.set(key, list);
      setTimeout(resolve, timeoutMs);
    });
  }

  private wake(key: string): void {
    const list = this.waiters.get(key);
    this.waiters.delete(key);
    for (const w of list ?? []) w();
  }

  private readResponse(key: string, rec: IdemRecord): StoredResponse {
    let body = "";
    for (let i = 0; i < rec.chunks; i++) body += this.kv.get<string>(`body:${key}:${i}`) ?? "";
    return { status: rec.status ?? 200, contentType: rec.contentType ?? "application/json", headers: rec.headers ?? {}, body };
  }

  private deleteRecord(key: string, rec: IdemRecord): void {
    for (let i = 0; i < rec.chunks; i++) this.kv.delete(`body:${key}:${i}`);
    this.kv.delete(`idem:${key}`);
  }

  // Expired records are swept by an alarm so storage does not grow forever.
  private scheduleSweep(nowMs: number): void {
    void this.ctx.storage.getAlarm().then((at) => {
      if (at === null) return this.ctx.storage.setAlarm(nowMs + IDEM_TTL_MS + 60_000);
    });
  }

  override async alarm(): Promise<void> {
    const now = Date.now();
    let next: number | null = null;
    for (const [k, rec] of this.kv.list<IdemRecord>({ prefix: "idem:" })) {
      const key = k.slice("idem:".length);
      if (rec.expiresAt <= now) this.deleteRecord(key, rec);
      else next = Math.min(next ?? Infinity, rec.expiresAt);
    }
    if (next !== null) await this.ctx.storage.setAlarm(next + 60_000);
  }
}

// Limiter: a fixed-window counter for requests that have no user yet
// (anonymous sign-up), keyed by tenant + client IP.
export class Limiter extends DurableObject<Env> {
  hit(limitPerMinute: number, nowMs: number): number | null {
    if (limitPerMinute <= 0) return null;
    const nowSec = Math.floor(nowMs / 1000);
    const minute = nowSec - (nowSec % 60);
    const rl = this.ctx.storage.kv.get<{ minute: number; count: number }>("rl");
    const count = rl && rl.minute === minute ? rl.count : 0;
    if (count >= limitPerMinute) return Math.max(1, minute + 60 - nowSec);
    this.ctx.storage.kv.put("rl", { minute, count: count + 1 });
    return null;
  }
}
