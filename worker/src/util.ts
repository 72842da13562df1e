// Small shared helpers: encoding, hashing, ids, time.

const enc = new TextEncoder();

export function b64url(bytes: ArrayBuffer | Uint8Array): string {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let s = "";
  for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000));
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

export function b64urlDecode(s: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*$/.test(s)) throw new Error("bad base64url");
  const b = atob(s.replaceAll("-", "+").replaceAll("_", "/") + "===".slice((s.length + 3) % 4));
  const out = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = b.charCodeAt(i);
  return out;
}

export function b64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export function hex(bytes: ArrayBuffer): string {
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function sha256Hex(data: string | Uint8Array): Promise<string> {
  return hex(await crypto.subtle.digest("SHA-256", typeof data === "string" ? enc.encode(data) : data));
}

export function randomToken(bytes = 32): string {
  return b64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** Short random id with a prefix, e.g. u_3kq9... (base32-ish, lower case). */
export function newId(prefix: string): string {
  const alphabet = "0123456789abcdefghjkmnpqrstvwxyz";
  const r = crypto.getRandomValues(new Uint8Array(20));
  let s = "";
  for (const b of r) s += alphabet[b & 31];
  return `${prefix}_${s}`;
}

/**
 * A per-isolate cache of values derived from their key (never state another isolate
 * would need to see), bounded in size: when full, the oldest entry goes.
 */
export class BoundedCache<K, V> {
  private readonly map = new Map<K, V>();
  constructor(private readonly max: number) {}

  get(key: K): V | undefined {
    return this.map.get(key);
  }

  set(key: K, value: V): void {
    if (!this.map.has(key) && this.map.size >= this.max) this.map.delete(this.map.keys().next().value!);
    this.map.set(key, value);
  }

  /** The cached value for `key`, made with `make` on a miss. */
  getOr(key: K, make: () => V): V {
    let value = this.map.get(key);
    if (value === undefined) this.set(key, (value = make()));
    return value;
  }
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);

// Memoised: callers ask for the same instant (a quota window's end) over and over.
let isoLast = { at: NaN, text: "" };
export function isoSeconds(epochSeconds: number): string {
  if (epochSeconds !== isoLast.at) isoLast = { at: epochSeconds, text: new Date(epochSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z") };
  return isoLast.text;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** JSON with object keys sorted, so a fingerprint ignores key order and whitespace. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const keys = Object.keys(value as Record<string, unknown>).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}

/** Raised when the Worker's own deadline on an upstream call passes. */
export class DeadlineError extends Error {}

/** Races a promise against the Worker's own deadline (always shorter than the client's). */
export function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(`deadline of ${ms} ms passed`)), Math.max(0, ms));
  });
  return Promise.race([p, deadline]).finally(() => timer !== undefined && clearTimeout(timer));
}
