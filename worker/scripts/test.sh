#!/usr/bin/env bash
# The Worker's part of the project test command. Runs on a fresh clone:
#   bash worker/scripts/test.sh
# 1. npm ci (from package-lock.json; npm 11 skips install scripts, nothing needs them)
# 2. tsc --noEmit (strict)
# 3. vitest run inside workerd (@cloudflare/vitest-pool-workers, wrangler.local.jsonc)
# 4. wrangler deploy --dry-run with the production config (wrangler.jsonc)
# 5. worker/scripts/schemathesis.sh, when present (OpenAPI conformance against a local Worker)
# 6. worker/scripts/serve-check.sh (the no-devtools local server the bench uses)
# Exits non-zero on the first failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$HERE"
export WRANGLER_SEND_METRICS=false
export NO_UPDATE_NOTIFIER=1
export CLOUDFLARE_CF_FETCH_ENABLED=false # no lookup of workers.cloudflare.com/cf.json (offline)
export CI="${CI:-1}"

step() { printf '\n== worker: %s\n' "$*" >&2; }

step "npm ci"
npm ci --no-audit --no-fund

step "tsc --noEmit"
npx tsc --noEmit

step "vitest run"
npx vitest run

step "wrangler deploy --dry-run (production config)"
rm -rf dist
npx wrangler deploy --dry-run --outdir dist --config wrangler.jsonc

if [ -f scripts/schemathesis.sh ]; then
  step "schemathesis"
  bash scripts/schemathesis.sh
fi

step "DEVTOOLS=off start-local.sh (the bench's harness, scripts/serve.mjs)"
bash scripts/serve-check.sh

step "all worker checks passed"
