// HS256 access tokens. The algorithm is pinned: the header must say exactly
// "HS256"; "none", RS256 or anything else is rejected before any signature
// work, so a token can never choose how it is verified.
import { b64url, b64urlDecode } from "./util";

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

/** Returns the claims, or null for any token that is not a valid, current HS256 token for this tenant. */
export async function verifyAccessToken(
  token: string,
  secret: string,
  tenant: string,
  nowSec: number,
): Promise<AccessClaims | null> {
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
  if (claims.iss !== ISSUER || claims.aud !== tenant) return null;
  if (typeof claims.sub !== "string" || typeof claims.sid !== "string") return null;
  if (typeof claims.exp !== "number" || claims.exp <= nowSec) return null;
  if (typeof claims.iat !== "number" || claims.iat > nowSec + 60) return null;
  return claims as AccessClaims;
}
