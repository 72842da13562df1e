#!/usr/bin/env bash
# Checks the local server the benchmark runs on (DEVTOOLS=off start-local.sh, i.e.
# scripts/serve.mjs): it answers on 127.0.0.1, a --var reaches the Worker, every request
# leaves one JSON log line on stdout, and SIGTERM stops it with its workerd processes.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$HERE"

PORT="${SERVE_CHECK_PORT:-18797}"
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
# setsid: its own process group, so the check can find (and, on failure, kill) all of it.
DEVTOOLS=off RATE_LIMIT_PER_MINUTE=1 setsid ./scripts/start-local.sh "$PORT" >"$LOG" 2>&1 &
PID=$!
fail() {
  kill -KILL -- "-$PID" 2>/dev/null || true
  echo "serve-check: $*" >&2
  sed 's/^/  | /' "$LOG" | tail -30 >&2
  exit 1
}

node - "$PORT" <<'JS' || fail "requests did not get the expected answers"
const port = process.argv[2];
const base = `http://127.0.0.1:${port}/api/v1`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const h = { "X-Client-ID": "serve-check", "Content-Type": "application/json" };
for (let i = 0; ; i++) {
  try { await fetch(`${base}/quota`); break; } catch { if (i > 240) throw new Error("no answer within 120 s"); await sleep(500); }
}
const s = await (await fetch(`${base}/auth/anonymous`, { method: "POST", headers: h, body: "{}" })).json();
const auth = { ...h, Authorization: `Bearer ${s.access_token}` };
const a = await fetch(`${base}/quota`, { headers: { ...auth, "X-Request-ID": "serve-check-0001" } });
const b = await fetch(`${base}/quota`, { headers: auth }); // RATE_LIMIT_PER_MINUTE=1 came through as a var
if (a.status !== 200 || b.status !== 429) throw new Error(`statuses ${a.status}, ${b.status}; wanted 200, 429`);
JS
sleep 0.5
grep -q '^{"level":"info","msg":"request","request_id":"serve-check-0001",.*"route":"quota","status":200' "$LOG" \
  || fail "no JSON log line for request serve-check-0001 on stdout"
[ "$(grep -c '"msg":"request"' "$LOG")" -ge 3 ] || fail "fewer log lines than requests"

kill -TERM "$PID"
for _ in $(seq 1 50); do kill -0 -- "-$PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 -- "-$PID" 2>/dev/null; then fail "still running 5 s after SIGTERM"; fi
echo "serve-check: ok (answers, vars, one log line per request on stdout, clean stop)"
