import { applyD1Migrations, env } from "cloudflare:test";

// D1 schema for every test file (idempotent).
await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
