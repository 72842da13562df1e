// HS256 access tokens. The algorithm is pinned: the header must say exactly
// "HS256"; "none", RS256 or anything else is rejected before any signature
// work, so a token can never choose how it is verified.
import { BoundedCache, b64url, b64urlDecode } from "./util";

const enc = new TextEncoder();
const dec = new TextDecoder();

export interface AccessClaims {
  iss: string;
  aud: string; // tenant (X-Client-ID) the token was issued for
  sub: string; // user id
  sid: string; // session family id
  iat: number;
  exp: number;
  anon: boolean;
}

export const ISSUER = "tether-worker";

// Imported keys are cached per secret: a cache of derived values, not state.
const keyCache = new Map<string, Promise<CryptoKey>>();

function hmacKey(secret: string): Promise<CryptoKey> {
  let k = keyCache.get(secret);
  if (!k) {
    k = crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    keyCache.set(secret, k);
  }
  return k;
}

export async function signAccessToken(claims: AccessClaims, secret: string): Promise<string> {
  const head = b64url(enc.encode(JSON.stringify({ alg: "HS256", typ: "JWT" })));
  const body = b64url(enc.encode(JSON.stringify(claims)));
  const sig = await crypto.subtle.sign("HMAC", await hmacKey(secret), enc.encode(`${head}.${body}`));
  return `${head}.${body}.${b64url(sig)}`;
}

// Tokens whose signature already verified, per isolate: a cache of a pure function
// (token + secret -> claims), not state. A client sends the same token for up to
// 15 minutes, so this saves the decode + HMAC on nearly every request. Expiry, issuer
// and tenant are still checked on every use; a different secret misses the cache.
const verified = new BoundedCache<string, { secret: string; claims: AccessClaims }>(4096);

/** Returns the claims, or null for any token that is not a valid, current HS256 token for this tenant. */
export async function verifyAccessToken(
  token: string,
  secret: string,
  tenant: string,
  nowSec: number,
): Promise<AccessClaims | null> {
  const hit = verified.get(token);
  if (hit && hit.secret === secret) return current(hit.claims, tenant, nowSec);
  const claims = await verifySignature(token, secret);
  if (!claims) return null;
  verified.set(token, { secret, claims });
  return current(claims, tenant, nowSec);
}

function current(claims: AccessClaims, tenant: string, nowSec: number): AccessClaims | null {
  if (claims.aud !== tenant) return null;
  if (claims.exp <= nowSec) return null;
  if (claims.iat > nowSec + 60) return null;
  return claims;
}

/** Decodes and checks the signature and the claim types; time and tenant are checked by the caller. */
async function verifySignature(token: string, secret: string): Promise<AccessClaims | null> {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  const [h, p, s] = parts as [string, string, string];
  let header: unknown;
  let claims: Partial<AccessClaims>;
  let sig: Uint8Array;
  try {
    header = JSON.parse(dec.decode(b64urlDecode(h)));
    claims = JSON.parse(dec.decode(b64urlDecode(p))) as Partial<AccessClaims>;
    sig = b64urlDecode(s);
  } catch {
    return null;
  }
  if (!header || typeof header !== "object") return null;
  const hdr = header as Record<string, unknown>;
  if (hdr.alg !== "HS256") return null; // pinned: no "none", no RS256/ES256, no key confusion
  if (hdr.crit !== undefined) return null;
  if (sig.length !== 32) return null;
  // crypto.subtle.verify compares in constant time.
  const ok = await crypto.subtle.verify("HMAC", await hmacKey(secret), sig, enc.encode(`${h}.${p}`));
  if (!ok) return null;
  if (!claims || typeof claims !== "object") return null;
  if (claims.iss !== ISSUER || typeof claims.aud !== "string") return null;
  if (typeof claims.sub !== "string" || typeof claims.sid !== "string") return null;
  if (typeof claims.exp !== "number" || typeof claims.iat !== "number") return null;
  return claims as AccessClaims;
}
