// One error type for every non-2xx answer, rendered in the contract's shape:
// { "error": { "code", "message", "retry_after"?, ...extra } }.

export type ErrorCode =
  | "bad_request"
  | "invalid_token"
  | "session_revoked"
  | "quota_exceeded"
  | "forbidden"
  | "not_found"
  | "method_not_allowed"
  | "timeout"
  | "payload_too_large"
  | "unsupported_media_type"
  | "idempotency_key_reused"
  | "invalid_input"
  | "rate_limited"
  | "internal"
  | "upstream"
  | "unavailable";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly opts: {
      retryAfter?: number;
      extra?: Record<string, unknown>;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message);
  }

  toResponse(): Response {
    const error: Record<string, unknown> = { code: this.code, message: this.message };
    if (this.opts.retryAfter !== undefined) error.retry_after = this.opts.retryAfter;
    Object.assign(error, this.opts.extra ?? {});
    const headers = new Headers({ "Content-Type": "application/json" });
    if (this.opts.retryAfter !== undefined) headers.set("Retry-After", String(this.opts.retryAfter));
    if (this.code === "invalid_token") headers.set("WWW-Authenticate", 'Bearer error="invalid_token"');
    for (const [k, v] of Object.entries(this.opts.headers ?? {})) headers.set(k, v);
    return new Response(JSON.stringify({ error }), { status: this.status, headers });
  }
}

export const badRequest = (m: string) => new ApiError(400, "bad_request", m);
export const invalidInput = (m: string) => new ApiError(422, "invalid_input", m);
export const invalidToken = (m = "Access token is missing, expired or invalid") =>
  new ApiError(401, "invalid_token", m);
export const sessionRevoked = (m = "Session is no longer valid; sign in again") =>
  new ApiError(401, "session_revoked", m);
export const notFound = (m = "Not found") => new ApiError(404, "not_found", m);
export const tooLarge = (maxBytes: number) =>
  new ApiError(413, "payload_too_large", `Request body exceeds ${maxBytes} bytes`, {
    extra: { max_bytes: maxBytes },
  });
export const unsupportedMedia = (m: string) => new ApiError(415, "unsupported_media_type", m);

/** Errors raised while calling a model or container: uncharged, retryable. */
export const deadlineExceeded = (what: string, retryAfter: number) =>
  new ApiError(408, "timeout", `${what} did not answer within the backend's deadline; retry with the same Idempotency-Key`, {
    retryAfter,
  });
export const coldStart = (retryAfter: number) =>
  new ApiError(503, "unavailable", "The detect container is starting; retry with the same Idempotency-Key", {
    retryAfter,
  });
export const upstream = (m: string) => new ApiError(502, "upstream", m);

export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  return new ApiError(500, "internal", "Internal error");
}
