// X-Client-ID names the tenant (the app). Every Durable Object name, D1 row
// and token is scoped by it, so nothing crosses from one app to another.
import type { Env } from "./env";
import { ApiError, badRequest } from "./errors";

const CLIENT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function tenantOf(req: Request, env: Env): string {
  const id = req.headers.get("X-Client-ID");
  if (id === null || id.trim() === "") throw badRequest("Missing X-Client-ID header");
  if (!CLIENT_ID.test(id)) throw badRequest("X-Client-ID must be 1-128 characters of A-Z a-z 0-9 . _ -");
  const allowed = allowList(env.ALLOWED_CLIENT_IDS ?? "");
  if (allowed.size > 0 && !allowed.has(id)) throw new ApiError(403, "forbidden", "Unknown client id");
  return id;
}

// The var is parsed once per value, not once per request.
let allowedRaw: string | null = null;
let allowed = new Set<string>();

function allowList(raw: string): Set<string> {
  if (raw !== allowedRaw) {
    allowed = new Set(raw.split(",").map((s) => s.trim()).filter(Boolean));
    allowedRaw = raw;
  }
  return allowed;
}

/** Durable Object names: tenant first, with a separator a client id cannot contain. */
export const userObjectName = (tenant: string, userId: string) => `${tenant}|${userId}`;
export const familyObjectName = (tenant: string, familyId: string) => `${tenant}|${familyId}`;
