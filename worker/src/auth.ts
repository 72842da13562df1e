// Sessions: anonymous sign-in, rotating refresh tokens, sign-out, and the
// access-token check used by every authenticated route.
import { config, limitsFor } from "./config";
import type { Env } from "./env";
import { ApiError, badRequest, invalidToken, sessionRevoked } from "./errors";
import { ISSUER, signAccessToken, verifyAccessToken, type AccessClaims } from "./jwt";
import { familyObjectName } from "./tenant";
import { b64, newId, nowSeconds, randomToken, sha256Hex } from "./util";

export interface Session {
  access_token: string;
  token_type: "Bearer";
  expires_in: number;
  refresh_token: string;
  user: { id: string; anonymous: boolean };
}

export interface Principal {
  tenant: string;
  userId: string;
  familyId: string;
}

function secretOf(env: Env): string {
  // Without a real secret we must not issue tokens at all.
  if (!env.JWT_SECRET || env.JWT_SECRET.length < 32) {
    throw new ApiError(500, "internal", "Server is not configured (JWT_SECRET missing or shorter than 32 characters)");
  }
  return env.JWT_SECRET;
}

// Refresh token: rt1.<user id>.<family id>.<random>. The ids route the token
// to its family's Durable Object; only the hash of the whole token is stored.
const REFRESH = /^rt1\.(u_[0-9a-z]{20})\.(f_[0-9a-z]{20})\.[A-Za-z0-9_-]{43}$/;

function parseRefresh(token: unknown): { userId: string; familyId: string; token: string } | null {
  if (typeof token !== "string") return null;
  const m = REFRESH.exec(token);
  return m ? { userId: m[1]!, familyId: m[2]!, token } : null;
}

const newRefreshToken = (userId: string, familyId: string) => `rt1.${userId}.${familyId}.${randomToken(32)}`;

async function issueSession(env: Env, tenant: string, userId: string, familyId: string, refreshToken: string): Promise<Session> {
  const now = nowSeconds();
  const ttl = limitsFor(env, tenant).accessTtlSeconds;
  const claims: AccessClaims = { iss: ISSUER, aud: tenant, sub: userId, sid: familyId, iat: now, exp: now + ttl, anon: true };
  return {
    access_token: await signAccessToken(claims, secretOf(env)),
    token_type: "Bearer",
    expires_in: ttl,
    refresh_token: refreshToken,
    user: { id: userId, anonymous: true },
  };
}

function familyStub(env: Env, tenant: string, familyId: string) {
  return env.SESSIONS.get(env.SESSIONS.idFromName(familyObjectName(tenant, familyId)));
}

export async function anonymousSignIn(env: Env, tenant: string, body: Record<string, unknown>): Promise<Session> {
  const deviceId = body.device_id;
  if (deviceId !== undefined && (typeof deviceId !== "string" || deviceId.length > 256)) {
    throw badRequest("device_id must be a string of at most 256 characters");
  }
  secretOf(env);
  const userId = newId("u");
  const familyId = newId("f");
  await env.DB.prepare("INSERT INTO users (tenant, id, anonymous, device_id, created_at) VALUES (?, ?, 1, ?, ?)")
    .bind(tenant, userId, deviceId ?? null, new Date().toISOString())
    .run();
  const refresh = newRefreshToken(userId, familyId);
  await familyStub(env, tenant, familyId).create(tenant, userId, await sha256Hex(refresh), nowSeconds() + config.refreshTtl(env));
  return issueSession(env, tenant, userId, familyId, refresh);
}

// The replay copy of a new session is sealed with a key only the legitimate
// retry can rebuild: SHA-256 of (old refresh token, Idempotency-Key).
async function replayKey(oldToken: string, idemKey: string): Promise<CryptoKey> {
  const raw = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`tether-refresh-replay\0${oldToken}\0${idemKey}`)));
  return crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
}

async function seal(session: Session, oldToken: string, idemKey: string): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, await replayKey(oldToken, idemKey), new TextEncoder().encode(JSON.stringify(session)));
  return `${b64(iv)}.${b64(new Uint8Array(ct))}`;
}

async function unseal(blob: string, oldToken: string, idemKey: string): Promise<Session | null> {
  try {
    const [ivB64, ctB64] = blob.split(".");
    const fromB64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
    const pt = await crypto.subtle.decrypt({ name: "AES-GCM", iv: fromB64(ivB64!) }, await replayKey(oldToken, idemKey), fromB64(ctB64!));
    return JSON.parse(new TextDecoder().decode(pt)) as Session;
  } catch {
    return null;
  }
}

export async function refresh(env: Env, tenant: string, body: Record<string, unknown>, idemKey: string | null): Promise<Session> {
  if (typeof body.refresh_token !== "string") throw badRequest("refresh_token is required");
  const parsed = parseRefresh(body.refresh_token);
  if (!parsed) throw sessionRevoked("Refresh token is invalid");
  // Everything async (hashing, signing, sealing) happens before the Durable
  // Object call, so the object decides atomically and never awaits.
  const next = newRefreshToken(parsed.userId, parsed.familyId);
  const session = await issueSession(env, tenant, parsed.userId, parsed.familyId, next);
  const result = await familyStub(env, tenant, parsed.familyId).rotate({
    presentedHash: await sha256Hex(parsed.token),
    newHash: await sha256Hex(next),
    newExpiresAt: nowSeconds() + config.refreshTtl(env),
    replayKeyHash: idemKey ? await sha256Hex(`idem\0${idemKey}`) : null,
    replayBlob: idemKey ? await seal(session, parsed.token, idemKey) : null,
    now: nowSeconds(),
    replayWindow: config.refreshReplayWindow(env),
  });
  if (result.kind === "issued") return session;
  if (result.kind === "replay" && idemKey) {
    const replayed = await unseal(result.blob, parsed.token, idemKey);
    if (replayed) return replayed;
  }
  throw sessionRevoked(
    result.kind === "revoked" && result.reason === "reuse"
      ? "Refresh token was already used; the session has been revoked"
      : "Refresh token is invalid, expired or revoked",
  );
}

/**
 * Sign-out (RFC 7009 style): the refresh token itself is the proof, no access
 * token needed. Revokes the token's family if that family issued it (current or
 * spent); an unknown, foreign or already revoked token is a silent no-op, so the
 * answer is the same 204 either way. Returns the user id when a family was revoked.
 */
export async function signOut(env: Env, tenant: string, body: Record<string, unknown>): Promise<string | null> {
  if (typeof body.refresh_token !== "string") throw badRequest("refresh_token is required");
  const parsed = parseRefresh(body.refresh_token);
  if (!parsed) return null;
  const revoked = await familyStub(env, tenant, parsed.familyId).revoke(await sha256Hex(parsed.token), parsed.userId);
  return revoked ? parsed.userId : null;
}

/**
 * The caller, if the request carries a valid access token for this tenant; null for
 * none, a malformed, expired or invalid one (for routes where the header is optional).
 */
export async function optionalPrincipal(req: Request, env: Env, tenant: string): Promise<Principal | null> {
  if (!req.headers.has("Authorization")) return null;
  try {
    return await authenticate(req, env, tenant);
  } catch {
    return null;
  }
}

export async function authenticate(req: Request, env: Env, tenant: string): Promise<Principal> {
  const h = req.headers.get("Authorization");
  const m = h ? /^Bearer\s+([A-Za-z0-9_\-.]+)\s*$/i.exec(h) : null;
  if (!m) throw invalidToken("Missing or malformed Authorization header");
  const claims = await verifyAccessToken(m[1]!, secretOf(env), tenant, nowSeconds());
  if (!claims) throw invalidToken();
  return { tenant, userId: claims.sub, familyId: claims.sid };
}

