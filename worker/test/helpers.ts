import { SELF } from "cloudflare:test";
import { encodePng } from "./png";

export const BASE = "http://worker.test/api/v1";

export interface Session {
  access_token: string;
  token_type: string;
  expires_in: number;
  refresh_token: string;
  user: { id: string; anonymous: boolean };
}

let n = 0;
/** A fresh tenant id per test keeps tests independent. */
export const freshTenant = (prefix = "app") => `${prefix}-${Date.now().toString(36)}-${(n++).toString(36)}`;

export function api(path: string, init: RequestInit & { tenant?: string; token?: string; key?: string } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (init.tenant !== undefined) headers.set("X-Client-ID", init.tenant);
  if (init.token !== undefined) headers.set("Authorization", `Bearer ${init.token}`);
  if (init.key !== undefined) headers.set("Idempotency-Key", init.key);
  if (!headers.has("User-Agent")) headers.set("User-Agent", "tether/0.1.0 (test)");
  return SELF.fetch(`${BASE}${path}`, { ...init, headers });
}

export async function signIn(tenant: string): Promise<Session> {
  const res = await api("/auth/anonymous", { method: "POST", tenant, headers: { "Content-Type": "application/json" }, body: "{}" });
  if (res.status !== 200) throw new Error(`sign-in failed: ${res.status} ${await res.text()}`);
  return (await res.json()) as Session;
}

export function postJson(path: string, s: { tenant: string; token?: string; key?: string }, body: unknown): Promise<Response> {
  return api(path, { method: "POST", ...s, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

export async function quota(tenant: string, token: string) {
  const res = await api("/quota", { tenant, token });
  return (await res.json()) as { plan: string; limit: number; remaining: number; reset_at: string; features: string[] };
}

export const uuid = () => crypto.randomUUID();

// ---- images (headers are what the stand-in reads; pixels are irrelevant) ----

export async function png(width: number, height: number): Promise<Uint8Array> {
  return encodePng(width, height, () => new Uint8Array(width * 3).fill(90));
}

export function jpeg(width: number, height: number): Uint8Array {
  const app0 = [0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00];
  const sof0 = [0xff, 0xc0, 0x00, 0x11, 0x08, height >> 8, height & 0xff, width >> 8, width & 0xff, 0x03, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1];
  return new Uint8Array([0xff, 0xd8, ...app0, 0xff, 0xdb, 0x00, 0x04, 0x00, 0x00, ...sof0, 0xff, 0xd9]);
}

const riff = (chunk: string, data: number[]) => {
  const t = new TextEncoder();
  const body = [...t.encode("WEBP"), ...t.encode(chunk), data.length & 0xff, (data.length >> 8) & 0xff, 0, 0, ...data];
  return new Uint8Array([...t.encode("RIFF"), body.length & 0xff, (body.length >> 8) & 0xff, 0, 0, ...body]);
};

export function webpLossy(width: number, height: number): Uint8Array {
  return riff("VP8 ", [0x30, 0x01, 0x00, 0x9d, 0x01, 0x2a, width & 0xff, (width >> 8) & 0x3f, height & 0xff, (height >> 8) & 0x3f, 0, 0]);
}

export function webpLossless(width: number, height: number): Uint8Array {
  const bits = ((width - 1) & 0x3fff) | (((height - 1) & 0x3fff) << 14);
  return riff("VP8L", [0x2f, bits & 0xff, (bits >>> 8) & 0xff, (bits >>> 16) & 0xff, (bits >>> 24) & 0xff, 0, 0, 0]);
}

export function webpExtended(width: number, height: number): Uint8Array {
  const w = width - 1;
  const h = height - 1;
  return riff("VP8X", [0, 0, 0, 0, w & 0xff, (w >> 8) & 0xff, (w >> 16) & 0xff, h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff]);
}

export function heic(width: number, height: number): Uint8Array {
  const t = new TextEncoder();
  const u32 = (v: number) => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
  const ftyp = [...u32(24), ...t.encode("ftypheic"), ...u32(0), ...t.encode("mif1heic")];
  const thumb = [...u32(20), ...t.encode("ispe"), ...u32(0), ...u32(160), ...u32(120)];
  const main = [...u32(20), ...t.encode("ispe"), ...u32(0), ...u32(width), ...u32(height)];
  return new Uint8Array([...ftyp, ...thumb, ...main]);
}

// ---- multipart with an explicit boundary ----

export type Part = { name: string; value: string } | { name: string; filename: string; type: string; bytes: Uint8Array };

export function multipart(parts: Part[], boundary = `----tether${crypto.randomUUID()}`): { body: Uint8Array; contentType: string } {
  const t = new TextEncoder();
  const chunks: Uint8Array[] = [];
  for (const p of parts) {
    if ("value" in p) {
      chunks.push(t.encode(`--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"\r\n\r\n${p.value}\r\n`));
    } else {
      chunks.push(t.encode(`--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"; filename="${p.filename}"\r\nContent-Type: ${p.type}\r\n\r\n`));
      chunks.push(p.bytes, t.encode("\r\n"));
    }
  }
  chunks.push(t.encode(`--${boundary}--\r\n`));
  const body = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    body.set(c, o);
    o += c.length;
  }
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
}

export function postMultipart(path: string, s: { tenant: string; token?: string; key?: string }, parts: Part[], boundary?: string): Promise<Response> {
  const m = multipart(parts, boundary);
  return api(path, { method: "POST", ...s, headers: { "Content-Type": m.contentType }, body: m.body });
}

// ---- SSE parsing by the WHATWG EventSource rules (what the client does) ----

export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

export function parseSse(text: string): { events: SseEvent[]; comments: string[] } {
  const events: SseEvent[] = [];
  const comments: string[] = [];
  let data: string[] = [];
  let event = "";
  let id: string | undefined;
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line === "") {
      if (data.length) events.push({ event: event || "message", data: data.join("\n"), ...(id ? { id } : {}) });
      data = [];
      event = "";
      continue;
    }
    if (line.startsWith(":")) {
      comments.push(line.slice(1).trim());
      continue;
    }
    const i = line.indexOf(":");
    const field = i === -1 ? line : line.slice(0, i);
    const value = i === -1 ? "" : line.slice(i + 1).replace(/^ /, "");
    if (field === "data") data.push(value);
    else if (field === "event") event = value;
    else if (field === "id") id = value;
  }
  return { events, comments };
}
