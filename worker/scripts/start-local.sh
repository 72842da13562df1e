#!/usr/bin/env bash
# Starts the Worker locally, offline, on 127.0.0.1:<port> (default 8787),
# in the foreground, with the stand-ins for Workers AI and the detect
# Container (wrangler.local.jsonc). Stop it with SIGINT/SIGTERM.
#
#   worker/scripts/start-local.sh 8787
#   DEVTOOLS=off worker/scripts/start-local.sh 8787   # no devtools session (scripts/serve.mjs):
#                                                     # log lines on stdout; what the bench runs
#
# Optional environment overrides (passed as wrangler --var):
#   RATE_LIMIT_PER_MINUTE, QUOTA_LIMIT_FREE, QUOTA_WINDOW_SECONDS,
#   STANDIN_CHAT_DELAY_MS, STANDIN_COLD_START_MS, AI_DEADLINE_MS,
#   DETECT_DEADLINE_MS, ANON_SIGNUPS_PER_MINUTE, KEEPALIVE_MS,
#   ACCESS_TTL_SECONDS, REFRESH_REPLAY_WINDOW_SECONDS,
#   TENANT_LIMITS (JSON, e.g. '{"my.app":{"access_ttl_seconds":2}}')
set -euo pipefail

PORT="${1:-8787}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$HERE"

export WRANGLER_SEND_METRICS=false
export WRANGLER_LOG="${WRANGLER_LOG:-log}"
export NO_UPDATE_NOTIFIER=1
export CLOUDFLARE_CF_FETCH_ENABLED=false # no lookup of workers.cloudflare.com/cf.json (offline)
export CI="${CI:-1}" # no interactive prompts

# 1. Dependencies (npm 11 skips install scripts; nothing here needs them).
if [ ! -d node_modules/wrangler ]; then
  npm ci --no-audit --no-fund >&2
fi

# 2. A random local JWT secret, never committed (.dev.vars is git-ignored).
if [ ! -f .dev.vars ] || ! grep -q '^JWT_SECRET=' .dev.vars; then
  umask 077
  echo "JWT_SECRET=$(node -e 'console.log(require("crypto").randomBytes(32).toString("hex"))')" >> .dev.vars
fi

# 3. Local D1 schema (idempotent; offline).
./node_modules/.bin/wrangler d1 migrations apply DB --local --config wrangler.local.jsonc >/dev/null

VARS=()
for name in RATE_LIMIT_PER_MINUTE QUOTA_LIMIT_FREE QUOTA_LIMIT_PRO QUOTA_WINDOW_SECONDS STANDIN_CHAT_DELAY_MS \
  STANDIN_COLD_START_MS AI_DEADLINE_MS DETECT_DEADLINE_MS ANON_SIGNUPS_PER_MINUTE KEEPALIVE_MS \
  ACCESS_TTL_SECONDS REFRESH_REPLAY_WINDOW_SECONDS TENANT_LIMITS; do
  if [ -n "${!name:-}" ]; then VARS+=(--var "$name:${!name}"); fi
done

# 4. Foreground, loopback only, telemetry off. DEVTOOLS=off: the same local dev server
#    without wrangler's devtools session (see scripts/serve.mjs for why).
if [ "${DEVTOOLS:-on}" = "off" ]; then
  exec node scripts/serve.mjs --config wrangler.local.jsonc --port "$PORT" "${VARS[@]}"
fi
#    Otherwise `wrangler dev`. The wrangler binary is exec'd
#    directly (not via npx), so a plain `kill <pid>` of this script stops
#    wrangler and its workerd children too.
exec ./node_modules/.bin/wrangler dev --config wrangler.local.jsonc --ip 127.0.0.1 --port "$PORT" \
  --local --show-interactive-dev-session=false "${VARS[@]}"
