// Entry point of the Tether reference backend (Cloudflare Worker).
// fetch: every /api/v1 request; queue: the jobs consumer.
// Durable Object classes are exported here so wrangler can bind them.
import type { RequestContext } from "./context";
import type { Env, JobMessage } from "./env";
import { toApiError } from "./errors";
import { consumeJobs } from "./jobs";
import { logEvent, logRequest, requestIdFor } from "./log";
import { dispatch, quotaForAnswer } from "./routes";
import { nowSeconds } from "./util";

export { UserState, Limiter } from "./userstate";
export { SessionFamily } from "./sessions";
export { StandinDetect } from "./standin/detect";
export { DetectContainer } from "./container";

export default {
  async fetch(req: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    const started = Date.now();
    const rc: RequestContext = {
      requestId: requestIdFor(req),
      route: "unknown",
      tenant: null,
      userId: null,
      authenticated: false,
      provider: null,
      quota: null,
      idempotency: null,
      exec: ctx,
    };
    let res: Response;
    let errorCode: string | null = null;
    try {
      res = await dispatch(req, env, rc);
    } catch (e) {
      const err = toApiError(e);
      if (err.status >= 500 && err.code === "internal") logEvent({ msg: "unhandled", request_id: rc.requestId, error: String(e), stack: (e as Error)?.stack });
      errorCode = err.code;
      res = err.toResponse();
    }
    // Responses from storage or streams can have immutable headers: copy those (and
    // HEAD answers, which drop the body); the usual freshly built one is used as is.
    if (req.method === "HEAD") res = new Response(null, res);
    try {
      res.headers.set("X-Request-ID", rc.requestId);
    } catch {
      res = new Response(res.body, res);
      res.headers.set("X-Request-ID", rc.requestId);
    }
    // Every answer to an authenticated request carries the quota (the contract), also
    // one refused before anything was charged.
    if (rc.authenticated && !rc.quota) rc.quota = await quotaForAnswer(env, rc);
    // RFC 9110: an origin with a clock sends Date. Clients anchor token expiry and quota
    // resets to it; Cloudflare's edge adds one in production, workerd does not.
    const sentDate = res.headers.get("Date");
    const dateSec = sentDate === null ? nowSeconds() : Math.floor(Date.parse(sentDate) / 1000);
    if (sentDate === null) res.headers.set("Date", new Date(dateSec * 1000).toUTCString());
    if (rc.quota) {
      res.headers.set("RateLimit-Limit", String(rc.quota.limit));
      res.headers.set("RateLimit-Remaining", String(rc.quota.remaining));
      // Counted from the Date sent, not from when the snapshot was taken (a second may
      // have passed since): Date + RateLimit-Reset is then exactly the window's end.
      res.headers.set("RateLimit-Reset", String(Math.max(0, Date.parse(rc.quota.reset_at) / 1000 - dateSec)));
      res.headers.set("X-Plan", rc.quota.plan);
    }
    if (rc.provider && !res.headers.has("X-Provider")) res.headers.set("X-Provider", rc.provider);
    logRequest({
      request_id: rc.requestId,
      tenant: rc.tenant,
      user_id: rc.userId,
      method: req.method,
      route: rc.route,
      status: res.status,
      duration_ms: Date.now() - started,
      provider: rc.provider,
      idempotency: rc.idempotency,
      error_code: errorCode,
    });
    return res;
  },

  async queue(batch: MessageBatch<JobMessage>, env: Env): Promise<void> {
    await consumeJobs(batch, env);
  },
} satisfies ExportedHandler<Env, JobMessage>;
