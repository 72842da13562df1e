// One structured JSON line per request. Fields are fixed so logs can be
// queried; tokens, secrets and bodies are never logged.

export interface RequestLog {
  request_id: string;
  tenant: string | null;
  user_id: string | null;
  method: string;
  route: string;
  status: number;
  duration_ms: number;
  provider: string | null;
  idempotency: string | null; // "new" | "replayed" | "joined" | null
  error_code: string | null;
}

export function logRequest(entry: RequestLog): void {
  console.log(JSON.stringify({ level: entry.status >= 500 ? "error" : "info", msg: "request", ...entry }));
}

export function logEvent(fields: Record<string, unknown>): void {
  console.log(JSON.stringify({ level: "info", ...fields }));
}

// Incoming X-Request-ID is kept when it looks like an id (so a proxy in front
// can correlate); anything else is replaced with a fresh one.
const REQUEST_ID = /^[A-Za-z0-9._:-]{8,128}$/;

// Fresh ids are a random per-isolate prefix plus a counter: unique across isolates
// (64 random bits each) without a UUID per request. The prefix is drawn on first
// use because Workers forbid random values at global scope.
let idPrefix = "";
let idCounter = 0;

export function requestIdFor(req: Request): string {
  const incoming = req.headers.get("X-Request-ID");
  if (incoming && REQUEST_ID.test(incoming)) return incoming;
  if (idPrefix === "") {
    for (const b of crypto.getRandomValues(new Uint8Array(8))) idPrefix += b.toString(16).padStart(2, "0");
  }
  return `req_${idPrefix}${(++idCounter).toString(16).padStart(16, "0")}`;
}
