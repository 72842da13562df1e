// Per-request facts the router fills in as it learns them; index.ts turns
// them into response headers and the one log line.
import type { QuotaSnapshot } from "./userstate";

export interface RequestContext {
  requestId: string;
  route: string;
  tenant: string | null;
  userId: string | null;
  // Set once an access token verified: from then on every answer, errors included,
  // carries the quota headers (the contract).
  authenticated: boolean;
  provider: string | null;
  quota: QuotaSnapshot | null;
  idempotency: string | null;
  exec: ExecutionContext;
}
