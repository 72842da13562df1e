import { defineConfig } from "vitest/config";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { fallbackStandin } from "./test/fallback-standin.ts";

// Tests run inside workerd with the local configuration (stand-ins on).
// A few vars are tightened so deadlines and limits can be hit quickly.
const migrations = await readD1Migrations("./migrations");

export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.local.jsonc" },
      miniflare: {
        bindings: {
          TEST_MIGRATIONS: migrations,
          JWT_SECRET: [...crypto.getRandomValues(new Uint8Array(32))].map((b) => b.toString(16).padStart(2, "0")).join(""),
          FALLBACK_URL: "http://fallback.test/v1",
          FALLBACK_API_KEY: "test-fallback-key",
          STANDIN_CHAT_DELAY_MS: "5",
          AI_DEADLINE_MS: "500",
          DETECT_DEADLINE_MS: "400",
          RATE_LIMIT_PER_MINUTE: "1000",
          ANON_SIGNUPS_PER_MINUTE: "30",
          TENANT_LIMITS: JSON.stringify({
            "app-ratelimit": { rate_limit_per_minute: 5 },
            "app-small": { quota_limit_free: 3 },
            "app-shortttl": { access_ttl_seconds: 5 },
          }),
        },
        // Outbound fetches of the Worker land here: a small local stand-in of
        // an OpenAI-compatible endpoint for the fallback tests.
        outboundService: fallbackStandin,
      },
    }),
  ],
  test: {
    include: ["test/**/*.test.ts"],
    setupFiles: ["./test/setup.ts"],
    testTimeout: 20_000,
    // One JSON log line per request is the point of the Worker, but noise in a passing run.
    silent: "passed-only",
  },
});
