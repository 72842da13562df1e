// The operator surface under /admin/ (not part of the public contract, not in
// openapi.yaml): today one route, setting a user's plan, which a purchase backend
// calls once it has verified a store receipt, and tests call to reach the paywall
// and lift it. It is off (every /admin/ path answers 404, like any unknown path)
// unless the ADMIN_TOKEN secret is set, and every call must carry that token.
import { limitsFor } from "./config";
import type { RequestContext } from "./context";
import type { Env } from "./env";
import { ApiError, badRequest, invalidInput, notFound } from "./errors";
import { readJsonObject } from "./body";
import { userStub } from "./idempotency";
import { logEvent } from "./log";
import { tenantOf } from "./tenant";
import { isPlan, PLANS } from "./userstate";
import { json } from "./util";

export const ADMIN_PREFIX = "/admin/";
/** Like JWT_SECRET: a shorter token is too easy to guess for a route that grants paid plans. */
export const MIN_ADMIN_TOKEN_CHARS = 32;

const PLAN_PATH = /^\/admin\/v1\/users\/([^/]+)\/plan$/;
const REALM = 'Bearer realm="tether-admin"';

const enc = new TextEncoder();

/** The configured token, or null when the surface is off (unset, empty or too short). */
function adminToken(env: Env): string | null {
  // Trimmed: a secret pasted with a trailing newline must still work.
  const t = env.ADMIN_TOKEN?.trim() ?? "";
  return t.length >= MIN_ADMIN_TOKEN_CHARS ? t : null;
}

/**
 * Compares in constant time. Both sides are hashed first, so the comparison is over
 * equal lengths and says nothing about the configured token's length either.
 */
async function sameToken(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([crypto.subtle.digest("SHA-256", enc.encode(given)), crypto.subtle.digest("SHA-256", enc.encode(expected))]);
  return crypto.subtle.timingSafeEqual(a, b);
}

async function authorise(req: Request, expected: string): Promise<void> {
  const h = req.headers.get("Authorization");
  const m = h ? /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(h) : null;
  // RFC 6750: no error attribute when no credentials were sent at all.
  if (!m) throw new ApiError(401, "invalid_token", "Admin token required", { headers: { "WWW-Authenticate": REALM } });
  if (!(await sameToken(m[1]!, expected))) {
    throw new ApiError(401, "invalid_token", "Admin token invalid", { headers: { "WWW-Authenticate": `${REALM}, error="invalid_token"` } });
  }
}

/**
 * Every /admin/ request. Order: off -> 404 (indistinguishable from an unknown path);
 * then the token (401), before anything about the surface is revealed; then the route
 * (404 / 405), the tenant (X-Client-ID, as everywhere), the user, the body.
 */
export async function dispatchAdmin(req: Request, env: Env, rc: RequestContext, path: string): Promise<Response> {
  const expected = adminToken(env);
  if (expected === null) {
    if (env.ADMIN_TOKEN?.trim()) logEvent({ msg: "admin_off", request_id: rc.requestId, reason: `ADMIN_TOKEN shorter than ${MIN_ADMIN_TOKEN_CHARS} characters` });
    throw notFound(`No route for ${path}`);
  }
  rc.route = "admin";
  await authorise(req, expected);
  const m = PLAN_PATH.exec(path);
  if (!m) throw notFound(`No route for ${path}`);
  if (req.method !== "POST") {
    throw new ApiError(405, "method_not_allowed", `${req.method} is not allowed here`, { headers: { Allow: "POST" } });
  }
  rc.route = "admin.plan";
  rc.tenant = tenantOf(req, env);
  return setPlan(req, env, rc, m[1]!);
}

async function setPlan(req: Request, env: Env, rc: RequestContext, rawUserId: string): Promise<Response> {
  const tenant = rc.tenant!;
  let userId: string;
  try {
    userId = decodeURIComponent(rawUserId);
  } catch {
    throw badRequest("Malformed user id");
  }
  const body = await readJsonObject(req);
  if (typeof body.plan !== "string") throw badRequest("plan must be a string");
  if (!isPlan(body.plan)) throw invalidInput(`plan must be one of ${PLANS.join(", ")}`);
  // Only users this tenant signed in: a mistyped id must not create a paying ghost.
  const known = await env.DB.prepare("SELECT 1 FROM users WHERE tenant = ?1 AND id = ?2").bind(tenant, userId).first();
  if (!known) throw notFound("Unknown user");
  rc.userId = userId;
  const { previous, quota } = await userStub(env, tenant, userId).setPlan(body.plan, limitsFor(env, tenant), Date.now());
  // The audit line: who (tenant, user) went from which plan to which. Never the token.
  logEvent({ msg: "plan_set", request_id: rc.requestId, tenant, user_id: userId, previous, plan: quota.plan });
  return json(
    { user_id: userId, plan: quota.plan, limit: quota.limit, remaining: quota.remaining, reset_at: quota.reset_at },
    200,
    { "Cache-Control": "no-store" },
  );
}
