// The metered-request runner: idempotency + quota around a piece of work.
//
//   begin (Durable Object, atomic): rate limit -> replay / mismatch / wait -> charge
//   work  (runs under waitUntil, so it finishes even if the client goes away)
//   complete (store the response for 24 h)  or  abort (refund, forget the key)
//
// Only successful (2xx) results are stored and charged. Every error after the
// charge (deadline, cold start, upstream failure) refunds it, so the client's
// retry with the same key runs again and is charged once.
import type { Limits } from "./config";
import type { RequestContext } from "./context";
import type { Env } from "./env";
import { ApiError, badRequest } from "./errors";
import { userObjectName } from "./tenant";
import type { StoredResponse } from "./userstate";
import { BoundedCache } from "./util";

export type WorkResult =
  | { kind: "body"; response: StoredResponse; provider: string }
  | { kind: "stream"; stream: ReadableStream<Uint8Array>; contentType: string; headers: Record<string, string>; provider: string };

// How long a duplicate waits for the original before getting a retryable 503.
const JOIN_WAIT_MS = 30_000;
// A running record whose worker vanished is taken over after this lease.
const LEASE_MS = 120_000;

const KEY = /^[\x21-\x7e]{1,255}$/;

export function idempotencyKeyOf(req: Request): string {
  const key = req.headers.get("Idempotency-Key");
  if (key === null || key === "") throw badRequest("Missing Idempotency-Key header (required on every metered POST)");
  if (!KEY.test(key)) throw badRequest("Idempotency-Key must be 1-255 visible ASCII characters");
  return key;
}

// A Durable Object id is a value derived from its name (no I/O), so ids are
// cached per isolate; the stub itself is made per request.
const userIds = new BoundedCache<string, DurableObjectId>(4096);

export function userStub(env: Env, tenant: string, userId: string) {
  const name = userObjectName(tenant, userId);
  return env.USER_STATE.get(userIds.getOr(name, () => env.USER_STATE.idFromName(name)));
}

export function quotaExceeded(quota: { plan: string; limit: number; remaining: number; reset_at: string; reset_in: number }): ApiError {
  return new ApiError(402, "quota_exceeded", `${quota.plan === "free" ? "Free" : "Plan"} plan limit reached`, {
    retryAfter: quota.reset_in,
    extra: {
      plan_required: "pro",
      quota: { plan: quota.plan, limit: quota.limit, remaining: quota.remaining, reset_at: quota.reset_at },
    },
  });
}

export function rateLimited(retryAfter: number): ApiError {
  return new ApiError(429, "rate_limited", "Too many requests; retry after the hint with the same Idempotency-Key", { retryAfter });
}

function replayResponse(stored: StoredResponse): Response {
  return new Response(stored.body, {
    status: stored.status,
    headers: { "Content-Type": stored.contentType, ...stored.headers, "Idempotent-Replayed": "true" },
  });
}

export async function runMetered(
  env: Env,
  rc: RequestContext,
  limits: Limits,
  key: string,
  fp: string,
  work: () => Promise<WorkResult>,
): Promise<Response> {
  const stub = userStub(env, rc.tenant!, rc.userId!);
  const giveUpAt = Date.now() + JOIN_WAIT_MS;
  let first = true;
  for (;;) {
    const r = await stub.begin({ key, fp, limits, nowMs: Date.now(), leaseMs: LEASE_MS, countRate: first });
    first = false;
    rc.quota = r.quota;
    if (r.kind === "rate_limited") throw rateLimited(r.retryAfter);
    if (r.kind === "mismatch") {
      throw new ApiError(422, "idempotency_key_reused", "This Idempotency-Key was used with a different request body");
    }
    if (r.kind === "quota_exceeded") throw quotaExceeded(r.quota);
    if (r.kind === "replay") {
      rc.idempotency = "replayed";
      rc.provider = r.response.headers["X-Provider"] ?? null;
      return replayResponse(r.response);
    }
    if (r.kind === "proceed") break;
    // in_progress: wait for the original, then ask again (it may have
    // finished -> replay, or failed -> we run it ourselves).
    rc.idempotency = "joined";
    const left = giveUpAt - Date.now();
    if (left <= 0) {
      throw new ApiError(503, "unavailable", "A request with this Idempotency-Key is still running; retry shortly", { retryAfter: 2 });
    }
    await stub.wait(key, Math.min(left, 5_000));
  }
  rc.idempotency ??= "new";

  // Charged work runs under waitUntil, and a JSON result is stored inside
  // that same promise: if the client disconnects, the result is still
  // produced and stored, and the client's retry gets it.
  const settled = (async (): Promise<{ result: WorkResult; stored?: StoredResponse }> => {
    let result: WorkResult;
    try {
      result = await work();
    } catch (e) {
      // Uncharged: refund, and let the error carry the refunded quota.
      rc.quota = await stub.abort(key, fp, limits, Date.now());
      throw e;
    }
    if (result.kind !== "body") return { result };
    const stored = { ...result.response, headers: { ...result.response.headers, "X-Provider": result.provider } };
    await stub.complete(key, fp, stored);
    return { result, stored };
  })();
  rc.exec.waitUntil(settled.then(() => undefined, () => undefined));
  const { result, stored } = await settled;
  rc.provider = result.provider;

  if (result.kind === "body") {
    return new Response(stored!.body, { status: stored!.status, headers: { "Content-Type": stored!.contentType, ...stored!.headers } });
  }

  // Streams: one branch goes to the client, the other is recorded and
  // stored when it ends with [DONE]; a broken stream refunds instead.
  const [toClient, toStore] = result.stream.tee();
  const headers = { ...result.headers, "X-Provider": result.provider };
  const contentType = result.contentType;
  const record = (async () => {
    const text = await new Response(toStore).text().catch(() => "");
    if (/(^|\n)data: \[DONE\]\r?\n\r?\n?$/.test(text) && !/(^|\n)event: error\r?\n/.test(text)) {
      await stub.complete(key, fp, { status: 200, contentType, headers, body: text });
    } else {
      await stub.abort(key, fp, limits, Date.now());
    }
  })();
  rc.exec.waitUntil(record);
  return new Response(toClient, { status: 200, headers: { "Content-Type": contentType, "Cache-Control": "no-cache", ...headers } });
}
