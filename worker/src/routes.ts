// The /api/v1 routes, and the hand-off to the operator surface (/admin/, admin.ts).
// Each handler validates its input completely before any charge, then hands the
// work to runMetered (idempotency + quota).
import { ADMIN_PREFIX, dispatchAdmin } from "./admin";
import { generateImage, openChat, vision } from "./ai";
import { anonymousSignIn, authenticate, optionalPrincipal, refresh, signOut, type Principal } from "./auth";
import { readJsonObject, readMultipart } from "./body";
import { config, limitsFor } from "./config";
import type { RequestContext } from "./context";
import { detect } from "./detect";
import type { Env } from "./env";
import { ApiError, badRequest, invalidInput, notFound } from "./errors";
import { idempotencyKeyOf, rateLimited, runMetered, userStub } from "./idempotency";
import { imageInfo } from "./imageinfo";
import { createJob, getJob, validateJob } from "./jobs";
import { encodeChatStream, type ChatEvent } from "./sse";
import type { ChatMessage } from "./standin/ai";
import { canonicalJson, json, sha256Hex } from "./util";
import { tenantOf } from "./tenant";
import { CHAT_MODEL } from "./ai";

export const FEATURES = ["detect", "chat", "vision", "images", "jobs"];

type Handler = (req: Request, env: Env, rc: RequestContext, params: string[]) => Promise<Response>;

interface Route {
  method: string;
  path: string; // a segment ":name" matches one non-empty segment, passed to the handler
  name: string;
  handler: Handler;
}

const ROUTES: Route[] = [
  { method: "POST", path: "/api/v1/auth/anonymous", name: "auth.anonymous", handler: postAnonymous },
  { method: "POST", path: "/api/v1/auth/refresh", name: "auth.refresh", handler: postRefresh },
  { method: "POST", path: "/api/v1/auth/signout", name: "auth.signout", handler: postSignout },
  { method: "GET", path: "/api/v1/quota", name: "quota", handler: getQuota },
  { method: "POST", path: "/api/v1/detect", name: "detect", handler: postDetect },
  { method: "POST", path: "/api/v1/vision", name: "vision", handler: postVision },
  { method: "POST", path: "/api/v1/chat", name: "chat", handler: postChat },
  { method: "POST", path: "/api/v1/images", name: "images", handler: postImages },
  { method: "POST", path: "/api/v1/jobs", name: "jobs.create", handler: postJob },
  { method: "GET", path: "/api/v1/jobs/:id", name: "jobs.get", handler: getJobRoute },
];

// Fixed paths are found with one map lookup; the few with parameters by pattern.
const FIXED = new Map<string, Route[]>();
const PATTERNED = new Map<string, { re: RegExp; routes: Route[] }>();
for (const route of ROUTES) {
  if (route.path.includes("/:")) {
    const re = new RegExp(`^${route.path.replace(/\/:[a-z]+/g, "/([^/]+)")}$`);
    PATTERNED.set(route.path, { re, routes: [...(PATTERNED.get(route.path)?.routes ?? []), route] });
  } else {
    FIXED.set(route.path, [...(FIXED.get(route.path) ?? []), route]);
  }
}

function routesFor(path: string): { routes: Route[]; params: string[] } {
  const fixed = FIXED.get(path);
  if (fixed) return { routes: fixed, params: [] };
  for (const { re, routes } of PATTERNED.values()) {
    const m = re.exec(path);
    if (m) return { routes, params: m.slice(1) };
  }
  return { routes: [], params: [] };
}

// A plain path (the usual case) is read straight from the URL string; anything
// with escapes or dots goes through the URL parser, which normalises them.
const PLAIN_URL = /^https?:\/\/[^/?#]+(\/[A-Za-z0-9_\/-]*)(?:[?#]|$)/;

function pathOf(url: string): string {
  const m = PLAIN_URL.exec(url);
  return m ? m[1]! : new URL(url).pathname;
}

export async function dispatch(req: Request, env: Env, rc: RequestContext): Promise<Response> {
  const path = pathOf(req.url);
  // The operator surface has its own gate (off unless ADMIN_TOKEN is set; see admin.ts).
  if (path.startsWith(ADMIN_PREFIX)) return dispatchAdmin(req, env, rc, path);
  const { routes, params } = routesFor(path);
  if (routes.length === 0) throw notFound(`No route for ${path}`);
  const method = req.method === "HEAD" ? "GET" : req.method;
  const r = routes.find((m) => m.method === method);
  if (!r) {
    throw new ApiError(405, "method_not_allowed", `${req.method} is not allowed here`, {
      headers: { Allow: routes.map((m) => m.method).join(", ") },
    });
  }
  rc.route = r.name;
  rc.tenant = tenantOf(req, env);
  return r.handler(req, env, rc, params);
}

/** Authenticates and counts the request against the per-user rate limit (non-metered routes). */
async function authed(req: Request, env: Env, rc: RequestContext): Promise<Principal> {
  const p = await authenticate(req, env, rc.tenant!);
  rc.userId = p.userId;
  rc.authenticated = true;
  return p;
}

/**
 * The caller's current quota, for an authenticated answer that has none yet (a 4xx
 * from validation before anything was charged, or a sign-out). Read only: nothing is
 * charged or counted. Null if the user's object cannot be reached: the answer then
 * goes out without the headers, which leaves the client's quota state unchanged.
 */
export async function quotaForAnswer(env: Env, rc: RequestContext) {
  if (!rc.tenant || !rc.userId) return null;
  try {
    return await userStub(env, rc.tenant, rc.userId).quota(limitsFor(env, rc.tenant), Date.now());
  } catch {
    return null;
  }
}

async function touch(env: Env, rc: RequestContext): Promise<void> {
  const t = await userStub(env, rc.tenant!, rc.userId!).touch(limitsFor(env, rc.tenant!), Date.now());
  rc.quota = t.quota;
  if (t.kind === "rate_limited") throw rateLimited(t.retryAfter);
}

// ---- session ----

async function postAnonymous(req: Request, env: Env, rc: RequestContext): Promise<Response> {
  // No user yet, so sign-ups are limited per tenant + client IP.
  const ip = req.headers.get("CF-Connecting-IP") ?? "unknown";
  const limiter = env.LIMITER.get(env.LIMITER.idFromName(`${rc.tenant}|anon|${ip}`));
  const wait = await limiter.hit(config.anonSignupsPerMinute(env), Date.now());
  if (wait !== null) throw rateLimited(wait);
  const body = await readJsonObject(req, { allowEmpty: true });
  const session = await anonymousSignIn(env, rc.tenant!, body);
  rc.userId = session.user.id;
  return json(session, 200, { "Cache-Control": "no-store" });
}

async function postRefresh(req: Request, env: Env, rc: RequestContext): Promise<Response> {
  const body = await readJsonObject(req);
  const key = req.headers.get("Idempotency-Key");
  const session = await refresh(env, rc.tenant!, body, key ? idempotencyKeyOf(req) : null);
  rc.userId = session.user.id;
  return json(session, 200, { "Cache-Control": "no-store" });
}

async function postSignout(req: Request, env: Env, rc: RequestContext): Promise<Response> {
  // The refresh token in the body is the proof; an Authorization header is optional and
  // may have expired (the client signs out whatever state its access token is in). A
  // valid one only makes this an authenticated answer, with the quota headers; it is
  // not counted against the rate limit, which must never keep a family alive.
  const p = await optionalPrincipal(req, env, rc.tenant!);
  if (p) {
    rc.userId = p.userId;
    rc.authenticated = true;
  }
  const body = await readJsonObject(req);
  const revokedUser = await signOut(env, rc.tenant!, body);
  rc.userId ??= revokedUser;
  return new Response(null, { status: 204 });
}

// ---- quota ----

async function getQuota(req: Request, env: Env, rc: RequestContext): Promise<Response> {
  await authed(req, env, rc);
  await touch(env, rc);
  const q = rc.quota!;
  return json({ plan: q.plan, limit: q.limit, remaining: q.remaining, reset_at: q.reset_at, features: FEATURES });
}

// ---- metered routes ----

function parseDetectOptions(text: string | undefined): { min_score: number; max_objects: number } {
  let o: Record<string, unknown> = {};
  if (text !== undefined && text.trim() !== "") {
    try {
      o = JSON.parse(text);
    } catch {
      throw badRequest("options must be JSON");
    }
    if (!o || typeof o !== "object" || Array.isArray(o)) throw badRequest("options must be a JSON object");
  }
  const minScore = o.min_score ?? 0.25;
  const maxObjects = o.max_objects ?? 20;
  if (typeof minScore !== "number" || minScore < 0 || minScore > 1) throw invalidInput("options.min_score must be a number in 0..1");
  if (typeof maxObjects !== "number" || !Number.isInteger(maxObjects) || maxObjects < 1 || maxObjects > 100) {
    throw invalidInput("options.max_objects must be an integer in 1..100");
  }
  return { min_score: minScore, max_objects: maxObjects };
}

async function postDetect(req: Request, env: Env, rc: RequestContext): Promise<Response> {
  await authed(req, env, rc);
  const key = idempotencyKeyOf(req);
  const body = await readMultipart(req, "detect");
  const options = parseDetectOptions(body.fields.get("options"));
  return runMetered(env, rc, limitsFor(env, rc.tenant!), key, body.fingerprint, async () => {
    const { result, provider } = await detect(env, rc.tenant!, body.image, options, rc.requestId, (p) => rc.exec.waitUntil(p));
    const out = { objects: result.objects, model: result.model, image: result.image };
    return { kind: "body", provider, response: { status: 200, contentType: "application/json", headers: {}, body: JSON.stringify(out) } };
  });
}

async function postVision(req: Request, env: Env, rc: RequestContext): Promise<Response> {
  await authed(req, env, rc);
  const key = idempotencyKeyOf(req);
  const body = await readMultipart(req, "vision");
  const prompt = body.fields.get("prompt");
  if (prompt === undefined || prompt.trim() === "") throw badRequest("Missing `prompt` text part");
  const info = imageInfo(body.image.bytes);
  if (!info) throw invalidInput("The image could not be decoded");
  return runMetered(env, rc, limitsFor(env, rc.tenant!), key, body.fingerprint, async () => {
    const r = await vision(env, body.image, info, prompt, rc.requestId);
    const out = { response: r.response, model: r.model, provider: r.provider };
    return { kind: "body", provider: r.provider, response: { status: 200, contentType: "application/json", headers: {}, body: JSON.stringify(out) } };
  });
}

function validateChat(body: Record<string, unknown>): { messages: ChatMessage[]; stream: boolean; maxTokens: number } {
  const msgs = body.messages;
  if (!Array.isArray(msgs)) throw badRequest("messages must be an array");
  if (msgs.length === 0) throw invalidInput("messages must not be empty");
  const messages: ChatMessage[] = msgs.map((m, i) => {
    if (!m || typeof m !== "object") throw badRequest(`messages[${i}] must be an object`);
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== "string" || typeof content !== "string") throw badRequest(`messages[${i}] needs string role and content`);
    if (!["system", "user", "assistant"].includes(role)) throw invalidInput(`messages[${i}].role must be system, user or assistant`);
    return { role, content };
  });
  if (body.model !== undefined && body.model !== CHAT_MODEL) throw invalidInput(`model must be ${CHAT_MODEL}`);
  if (body.stream !== undefined && typeof body.stream !== "boolean") throw badRequest("stream must be a boolean");
  const maxTokens = body.max_tokens ?? 512;
  if (typeof maxTokens !== "number" || !Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > 4096) {
    throw invalidInput("max_tokens must be an integer in 1..4096");
  }
  return { messages, stream: body.stream === true, maxTokens };
}

async function postChat(req: Request, env: Env, rc: RequestContext): Promise<Response> {
  await authed(req, env, rc);
  const key = idempotencyKeyOf(req);
  const raw = await readJsonObject(req);
  const chat = validateChat(raw);
  const fp = await sha256Hex(`chat\n${canonicalJson(raw)}`);
  return runMetered(env, rc, limitsFor(env, rc.tenant!), key, fp, async () => {
    const open = await openChat(env, chat.messages, chat.maxTokens, rc.requestId);
    const onError = () => ({ code: "upstream", message: "The model stream broke off" });
    if (chat.stream) {
      const stream = encodeChatStream(open.first, open.rest, config.keepaliveMs(env), onError);
      return { kind: "stream", stream, contentType: "text/event-stream; charset=utf-8", headers: {}, provider: open.provider };
    }
    let text = "";
    let usage: ChatEvent["usage"] = { prompt_tokens: 0, completion_tokens: 0 };
    const take = (ev: ChatEvent) => {
      text += ev.response;
      if (ev.usage) usage = ev.usage;
    };
    open.first.forEach(take);
    for (;;) {
      const r = await open.rest.next();
      if (r.done) break;
      take(r.value);
    }
    const out = { response: text, usage, model: open.model, provider: open.provider };
    return { kind: "body", provider: open.provider, response: { status: 200, contentType: "application/json", headers: {}, body: JSON.stringify(out) } };
  });
}

const clamp = (n: number) => Math.min(2048, Math.max(256, Math.round(n)));

async function postImages(req: Request, env: Env, rc: RequestContext): Promise<Response> {
  await authed(req, env, rc);
  const key = idempotencyKeyOf(req);
  const raw = await readJsonObject(req);
  if (typeof raw.prompt !== "string" || raw.prompt.trim() === "") throw badRequest("prompt is required");
  for (const k of ["width", "height"] as const) {
    if (raw[k] !== undefined && (typeof raw[k] !== "number" || !Number.isFinite(raw[k]))) throw badRequest(`${k} must be a number`);
  }
  const prompt = raw.prompt;
  const width = clamp((raw.width as number | undefined) ?? 1024);
  const height = clamp((raw.height as number | undefined) ?? 1024);
  const fp = await sha256Hex(`images\n${canonicalJson(raw)}`);
  return runMetered(env, rc, limitsFor(env, rc.tenant!), key, fp, async () => {
    const r = await generateImage(env, prompt, width, height, rc.requestId);
    const out = { image: r.image, model: r.model, provider: r.provider };
    return { kind: "body", provider: r.provider, response: { status: 200, contentType: "application/json", headers: {}, body: JSON.stringify(out) } };
  });
}

// ---- jobs ----

async function postJob(req: Request, env: Env, rc: RequestContext): Promise<Response> {
  await authed(req, env, rc);
  const key = idempotencyKeyOf(req);
  const raw = await readJsonObject(req);
  const job = validateJob(raw);
  const fp = await sha256Hex(`jobs\n${canonicalJson(raw)}`);
  return runMetered(env, rc, limitsFor(env, rc.tenant!), key, fp, async () => {
    const out = await createJob(env, rc.tenant!, rc.userId!, job, rc.requestId);
    return { kind: "body", provider: "queue", response: { status: 202, contentType: "application/json", headers: {}, body: JSON.stringify(out) } };
  });
}

async function getJobRoute(req: Request, env: Env, rc: RequestContext, params: string[]): Promise<Response> {
  const p = await authed(req, env, rc);
  await touch(env, rc);
  return json(await getJob(env, p.tenant, p.userId, decodeURIComponent(params[0]!)));
}
