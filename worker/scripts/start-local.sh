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
# and, as a secret (never a --var: wrangler prints var values, and argv shows in ps):
#   ADMIN_TOKEN (>= 32 characters of A-Z a-z 0-9 - . _ ~ + / =): turns on the operator
#   surface /admin/ (src/admin.ts); unset, it answers 404 as in production by default
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

# 4. Optional operator token (a secret: see the header). serve.mjs takes it from its
#    environment; wrangler dev from an env file (mode 600, in the git-ignored .wrangler/,
#    named by a hash of the token so reruns with one token, e.g. scripts/e2e's, reuse one
#    file; written by rename, so a concurrent start never reads half of it). Given
#    --env-file, wrangler stops reading .dev.vars by itself, so that file is passed first.
SECRETS=()
ENV_FILES=()
if [ -n "${ADMIN_TOKEN:-}" ]; then
  if ! [[ "$ADMIN_TOKEN" =~ ^[A-Za-z0-9._~+/=-]{32,}$ ]]; then
    echo "start-local.sh: ADMIN_TOKEN must be at least 32 characters of A-Z a-z 0-9 - . _ ~ + / =" >&2
    exit 2
  fi
  if [ "${DEVTOOLS:-on}" = "off" ]; then
    SECRETS=(--secret-from-env ADMIN_TOKEN)
  else
    mkdir -p .wrangler
    admin_env=".wrangler/admin-token.$(printf '%s' "$ADMIN_TOKEN" | sha256sum | cut -c1-16).env"
    (umask 077 && tmp="$(mktemp .wrangler/admin-token.XXXXXX)" && printf 'ADMIN_TOKEN=%s\n' "$ADMIN_TOKEN" >"$tmp" && mv -f "$tmp" "$admin_env")
    ENV_FILES=(--env-file .dev.vars --env-file "$admin_env")
  fi
  echo "start-local.sh: operator surface /admin/ on (ADMIN_TOKEN from the environment)" >&2
fi

VARS=()
for name in RATE_LIMIT_PER_MINUTE QUOTA_LIMIT_FREE QUOTA_LIMIT_PRO QUOTA_WINDOW_SECONDS STANDIN_CHAT_DELAY_MS \
  STANDIN_COLD_START_MS AI_DEADLINE_MS DETECT_DEADLINE_MS ANON_SIGNUPS_PER_MINUTE KEEPALIVE_MS \
  ACCESS_TTL_SECONDS REFRESH_REPLAY_WINDOW_SECONDS TENANT_LIMITS; do
  if [ -n "${!name:-}" ]; then VARS+=(--var "$name:${!name}"); fi
done

# 5. Foreground, loopback only, telemetry off. DEVTOOLS=off: the same local dev server
#    without wrangler's devtools session (see scripts/serve.mjs for why).
if [ "${DEVTOOLS:-on}" = "off" ]; then
  exec node scripts/serve.mjs --config wrangler.local.jsonc --port "$PORT" "${VARS[@]}" "${SECRETS[@]}"
fi
#    Otherwise `wrangler dev`. The wrangler binary is exec'd
#    directly (not via npx), so a plain `kill <pid>` of this script stops
#    wrangler and its workerd children too.
exec ./node_modules/.bin/wrangler dev --config wrangler.local.jsonc --ip 127.0.0.1 --port "$PORT" \
  --local --show-interactive-dev-session=false "${VARS[@]}" "${ENV_FILES[@]}"
