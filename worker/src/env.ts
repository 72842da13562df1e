// The Worker's bindings and vars. Vars arrive as strings; config.ts turns
// them into typed numbers with defaults.
import type { UserState, Limiter } from "./userstate";
import type { SessionFamily } from "./sessions";

/** The slice of the Workers AI binding we use (model ids are plain strings here). */
export interface AiBinding {
  run(model: string, inputs: Record<string, unknown>, options?: Record<string, unknown>): Promise<unknown>;
}

export interface Env {
  // Secrets (.dev.vars locally, `wrangler secret put` in production).
  JWT_SECRET?: string;
  FALLBACK_API_KEY?: string;
  // Unset or empty (the default): the /admin/ surface answers 404. See admin.ts.
  ADMIN_TOKEN?: string;

  // Vars (all optional: config.ts has the defaults).
  AI_MODE?: string; // "workers-ai" | "standin"
  DETECT_MODE?: string; // "container" | "standin"
  QUOTA_LIMIT_FREE?: string;
  QUOTA_LIMIT_PRO?: string;
  QUOTA_WINDOW_SECONDS?: string;
  RATE_LIMIT_PER_MINUTE?: string;
  ANON_SIGNUPS_PER_MINUTE?: string;
  ACCESS_TTL_SECONDS?: string;
  REFRESH_TTL_SECONDS?: string;
  REFRESH_REPLAY_WINDOW_SECONDS?: string;
  AI_DEADLINE_MS?: string;
  DETECT_DEADLINE_MS?: string;
  ALLOWED_CLIENT_IDS?: string;
  FALLBACK_URL?: string;
  FALLBACK_MODEL?: string;
  KEEPALIVE_MS?: string;
  TENANT_LIMITS?: string; // JSON: { "<client id>": { "rate_limit_per_minute": n, "quota_limit_free": n } }
  STANDIN_CHAT_DELAY_MS?: string;
  STANDIN_COLD_START_MS?: string;
  STANDIN_SLEEP_AFTER_MS?: string;

  // Bindings.
  AI?: AiBinding;
  DB: D1Database;
  JOBS: Queue<JobMessage>;
  USER_STATE: DurableObjectNamespace<UserState>;
  SESSIONS: DurableObjectNamespace<SessionFamily>;
  LIMITER: DurableObjectNamespace<Limiter>;
  DETECT_CONTAINER?: DurableObjectNamespace;
  IMAGES?: ImagesBinding;
  STANDIN_DETECT?: DurableObjectNamespace;
}

export interface JobMessage {
  tenant: string;
  jobId: string;
  requestId: string;
}
