// SessionFamily: one Durable Object per refresh-token family (tenant + family
// id). Rotation must be strongly consistent: of N concurrent refreshes with
// one token, exactly one may rotate it. Every method below runs its storage
// work synchronously (SQLite-backed sync KV, no await), so the object's
// single thread gives us that serialisation for free.
//
// Only SHA-256 hashes of refresh tokens are stored. The replay blob (see
// rotate) is encrypted with a key derived from the presented token and the
// Idempotency-Key, which the server does not keep.
import { DurableObject } from "cloudflare:workers";
import type { Env } from "./env";

interface Family {
  tenant: string;
  userId: string;
  currentHash: string;
  expiresAt: number; // epoch seconds; sliding, renewed on each rotation
  revoked: boolean;
  generation: number;
  // Hash of the token spent by the latest rotation: its replay copy is dropped at the
  // next rotation, when it can no longer be replayed (the contract's condition).
  lastSpentHash?: string;
}

interface UsedToken {
  at: number;
  nextHash: string;
  replayKeyHash: string | null;
  replayBlob: string | null;
  replayUntil: number;
}

export type RotateResult =
  | { kind: "issued" }
  | { kind: "replay"; blob: string }
  | { kind: "revoked"; reason: "unknown" | "expired" | "revoked" | "reuse" };

export class SessionFamily extends DurableObject<Env> {
  private get kv() {
    return this.ctx.storage.kv;
  }

  create(tenant: string, userId: string, tokenHash: string, expiresAt: number): void {
    const f: Family = { tenant, userId, currentHash: tokenHash, expiresAt, revoked: false, generation: 1 };
    this.kv.put("family", f);
  }

  rotate(args: {
    presentedHash: string;
    newHash: string;
    newExpiresAt: number;
    replayKeyHash: string | null;
    replayBlob: string | null;
    now: number;
    replayWindow: number;
  }): RotateResult {
    const f = this.kv.get<Family>("family");
    if (!f) return { kind: "revoked", reason: "unknown" };
    if (f.revoked) return { kind: "revoked", reason: "revoked" };
    if (args.now >= f.expiresAt) return { kind: "revoked", reason: "expired" };

    if (args.presentedHash === f.currentHash) {
      const used: UsedToken = {
        at: args.now,
        nextHash: args.newHash,
        replayKeyHash: args.replayKeyHash,
        replayBlob: args.replayBlob,
        replayUntil: args.now + args.replayWindow,
      };
      this.kv.put(`used:${args.presentedHash}`, used);
      this.dropReplayCopy(f);
      f.lastSpentHash = args.presentedHash;
      f.currentHash = args.newHash;
      f.expiresAt = args.newExpiresAt;
      f.generation += 1;
      this.kv.put("family", f);
      return { kind: "issued" };
    }

    const used = this.kv.get<UsedToken>(`used:${args.presentedHash}`);
    if (!used) return { kind: "revoked", reason: "unknown" };

    // A retry of the same refresh (same old token, same Idempotency-Key, within
    // the window, and the session it produced is still the family's latest, i.e.
    // its refresh token has not been used) gets the same new session back
    // instead of being treated as theft.
    if (
      args.replayKeyHash !== null &&
      used.replayKeyHash === args.replayKeyHash &&
      used.replayBlob !== null &&
      args.now <= used.replayUntil &&
      f.currentHash === used.nextHash
    ) {
      return { kind: "replay", blob: used.replayBlob };
    }

    // Any other presentation of a spent token (no key, another key, past the
    // window, or its session was rotated since): assume it leaked and sign the
    // whole family out.
    this.revokeFamily(f);
    return { kind: "revoked", reason: "reuse" };
  }

  /**
   * Sign-out: the refresh token is the proof (RFC 7009 style). Revokes the family
   * when the token is one it issued (current or spent) to this user; anything
   * else is a no-op.
   */
  revoke(presentedHash: string, userId: string): boolean {
    const f = this.kv.get<Family>("family");
    if (!f || f.userId !== userId) return false;
    const known = presentedHash === f.currentHash || this.kv.get(`used:${presentedHash}`) !== undefined;
    if (!known) return false;
    if (!f.revoked) this.revokeFamily(f);
    return true;
  }

  private revokeFamily(f: Family): void {
    this.dropReplayCopy(f);
    f.revoked = true;
    this.kv.put("family", f);
  }

  /** A revoked family or a rotated session is never replayed: its sealed copy can go. */
  private dropReplayCopy(f: Family): void {
    if (!f.lastSpentHash) return;
    const key = `used:${f.lastSpentHash}`;
    const used = this.kv.get<UsedToken>(key);
    if (used && used.replayBlob !== null) this.kv.put(key, { ...used, replayKeyHash: null, replayBlob: null });
  }
}
