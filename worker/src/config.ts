import type { Env } from "./env";
import { BoundedCache } from "./util";

// Every limit is a var so tests, the bench and each deployment can tune it
// without code changes. Defaults are the contract's values.

function int(value: string | undefined, fallback: number): number {
  if (value === undefined || value.trim() === "") return fallback;
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? Math.floor(n) : fallback;
}

interface TenantLimits {
  rate_limit_per_minute?: number;
  quota_limit_free?: number;
  access_ttl_seconds?: number;
}

function tenantLimits(env: Env, tenant: string): TenantLimits {
  if (!env.TENANT_LIMITS) return {};
  try {
    const all = JSON.parse(env.TENANT_LIMITS) as Record<string, TenantLimits>;
    return all[tenant] ?? {};
  } catch {
    return {};
  }
}

export interface Limits {
  quotaLimitFree: number;
  quotaLimitPro: number;
  quotaWindowSeconds: number;
  rateLimitPerMinute: number;
  accessTtlSeconds: number;
}

// Vars are fixed for an isolate's env object, so limits are worked out once per
// (env, tenant).
const limitsCache = new WeakMap<Env, BoundedCache<string, Limits>>();

export function limitsFor(env: Env, tenant: string): Limits {
  let perTenant = limitsCache.get(env);
  if (!perTenant) limitsCache.set(env, (perTenant = new BoundedCache(4096)));
  return perTenant.getOr(tenant, () => computeLimits(env, tenant));
}

function computeLimits(env: Env, tenant: string): Limits {
  const t = tenantLimits(env, tenant);
  return {
    quotaLimitFree: t.quota_limit_free ?? int(env.QUOTA_LIMIT_FREE, 50),
    quotaLimitPro: int(env.QUOTA_LIMIT_PRO, 5000),
    quotaWindowSeconds: Math.max(1, int(env.QUOTA_WINDOW_SECONDS, 86400)),
    rateLimitPerMinute: t.rate_limit_per_minute ?? int(env.RATE_LIMIT_PER_MINUTE, 60),
    // At least 1 s: a token must be usable at all.
    accessTtlSeconds: Math.max(1, t.access_ttl_seconds ?? int(env.ACCESS_TTL_SECONDS, 900)),
  };
}

export const config = {
  refreshTtl: (env: Env) => int(env.REFRESH_TTL_SECONDS, 30 * 86400),
  // The contract: a retry of the refresh that spent a token gets its session back for 24 h.
  refreshReplayWindow: (env: Env) => int(env.REFRESH_REPLAY_WINDOW_SECONDS, 86400),
  anonSignupsPerMinute: (env: Env) => int(env.ANON_SIGNUPS_PER_MINUTE, 20),
  aiDeadlineMs: (env: Env) => int(env.AI_DEADLINE_MS, 25000),
  detectDeadlineMs: (env: Env) => int(env.DETECT_DEADLINE_MS, 8000),
  keepaliveMs: (env: Env) => Math.max(100, int(env.KEEPALIVE_MS, 15000)),
  standinChatDelayMs: (env: Env) => int(env.STANDIN_CHAT_DELAY_MS, 20),
  standinColdStartMs: (env: Env) => int(env.STANDIN_COLD_START_MS, 0),
  standinSleepAfterMs: (env: Env) => int(env.STANDIN_SLEEP_AFTER_MS, 300000),
  aiStandin: (env: Env) => env.AI_MODE === "standin",
  detectStandin: (env: Env) => env.DETECT_MODE === "standin",
};

// Body limits from the contract.
export const MAX_IMAGE_BYTES = 10 * 1024 * 1024;
// A multipart body holds the image plus small text parts and part headers.
export const MAX_MULTIPART_BYTES = MAX_IMAGE_BYTES + 64 * 1024;
export const MAX_JSON_BYTES = 1024 * 1024;
