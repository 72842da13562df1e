// Per-request facts the router fills in as it learns them; index.ts turns
// them into response headers and the one log line.
import type { QuotaSnapshot } from "./userstate";

export interface RequestContext {
  requestId: string;
  route: string;
  tenant: string | null;
  userId: string | null;
  provider: string | null;
  quota: QuotaSnapshot | null;
  idempotency: string | null;
  exec: ExecutionContext;
}
