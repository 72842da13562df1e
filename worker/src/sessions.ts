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
      f.currentHash = args.newHash;
      f.expiresAt = args.newExpiresAt;
      f.generation += 1;
      this.kv.put("family", f);
      return { kind: "issued" };
    }

    const used = this.kv.get<UsedToken>(`used:${args.presentedHash}`);
    if (!used) return { kind: "revoked", reason: "unknown" };

    // A retry of the same refresh (same old token, same Idempotency-Key, within
    // the window, and the session it produced has not been rotated since) gets
    // the same new session back instead of being treated as theft.
    if (
      args.replayKeyHash !== null &&
      used.replayKeyHash === args.replayKeyHash &&
      used.replayBlob !== null &&
      args.now <= used.replayUntil &&
      f.currentHash === used.nextHash
    ) {
      return { kind: "replay", blob: used.replayBlob };
    }

    // Reuse of a spent token: assume it leaked and sign the whole family out.
    f.revoked = true;
    this.kv.put("family", f);
    return { kind: "revoked", reason: "reuse" };
  }

  /** Sign-out: revoke the family if the token belongs to it and to this user. */
  revoke(presentedHash: string, userId: string): boolean {
    const f = this.kv.get<Family>("family");
    if (!f || f.userId !== userId) return false;
    const known = presentedHash === f.currentHash || this.kv.get(`used:${presentedHash}`) !== undefined;
    if (!known) return false;
    f.revoked = true;
    this.kv.put("family", f);
    return true;
  }
}
