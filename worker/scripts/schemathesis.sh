#!/usr/bin/env bash
# worker/scripts/schemathesis.sh — property-based API test of the local Worker against
# worker/openapi.yaml (the machine-readable copy of the contract, API.md).
#
#   bash worker/scripts/schemathesis.sh            # from anywhere in the repo
#
# 1. Installs schemathesis (pinned) into a venv under <repo>/.tools/venv (gitignored) if missing.
# 2. Starts the local Worker: `bash worker/scripts/start-local.sh <port>` (wrangler dev on
#    127.0.0.1 with the local stand-ins), in its own process group, and polls until it answers.
# 3. Signs in one anonymous user (POST /api/v1/auth/anonymous with X-Client-ID) as a smoke
#    test and hands its access token to schemathesis. Schemathesis sends it as
#    `Authorization: Bearer ...` through an auth provider that switches to a NEW anonymous
#    user every $ST_PER_USER requests, so that the default per-user rate limit (60/min) and
#    free quota (50) do not turn most answers into 429/402 and the successful paths are
#    exercised too (429 and 402 stay documented and are still accepted).
# 4. Runs `schemathesis run` with checks not_a_server_error, status_code_conformance,
#    content_type_conformance, response_headers_conformance, response_schema_conformance,
#    bounded in examples and time (the whole run is killed after $ST_TIMEOUT s).
# 5. Stops the Worker (whole process group) and exits non-zero if anything failed.
#
# Knobs (environment): ST_PORT (18797), ST_MAX_EXAMPLES (20), ST_TIMEOUT (200, seconds for
# the schemathesis run), ST_SEED (20261124; "random" for a fresh seed), ST_PER_USER (20),
# ST_CLIENT_ID (com.tether.schemathesis), ST_WORKERS (2).
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
port="${ST_PORT:-18797}"
base="http://127.0.0.1:${port}"
client_id="${ST_CLIENT_ID:-com.tether.schemathesis}"
max_examples="${ST_MAX_EXAMPLES:-20}"
st_timeout="${ST_TIMEOUT:-200}"
seed="${ST_SEED:-20261124}"
per_user="${ST_PER_USER:-20}"
workers="${ST_WORKERS:-2}"
venv="$root/.tools/venv"

say() { printf '[schemathesis.sh] %s\n' "$*" >&2; }

# ---- 1. schemathesis in a venv
if [ ! -x "$venv/bin/schemathesis" ] || [ "$("$venv/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
  say "installing schemathesis==$SCHEMATHESIS_VERSION into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

if [ ! -f "$root/worker/scripts/start-local.sh" ]; then
  say "worker/scripts/start-local.sh is missing: cannot start the local Worker"
  exit 1
fi

work="$(mktemp -d)"
log="$work/worker.log"
worker_pid=""

stop_worker() {
  [ -n "$worker_pid" ] || return 0
  if kill -0 "$worker_pid" 2>/dev/null; then
    kill -TERM -- "-$worker_pid" 2>/dev/null || kill -TERM "$worker_pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
      kill -0 -- "-$worker_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$worker_pid" 2>/dev/null || true
  fi
  worker_pid=""
}
cleanup() {
  stop_worker
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 2. the local Worker, in its own process group (setsid), so one kill stops wrangler and workerd
say "starting the local Worker on 127.0.0.1:$port (log: $log)"
( cd "$root" && exec setsid bash worker/scripts/start-local.sh "$port" ) >"$log" 2>&1 &
worker_pid=$!

ready=""
for _ in $(seq 1 600); do   # up to 300 s: a fresh clone runs npm ci first
  if ! kill -0 "$worker_pid" 2>/dev/null; then
    say "the Worker exited before answering; its log:"
    tail -n 40 "$log" >&2
    exit 1
  fi
  if curl -s -o /dev/null --max-time 2 "$base/api/v1/quota"; then ready=1; break; fi
  sleep 0.5
done
if [ -z "$ready" ]; then
  say "the Worker did not answer on $base within 300 s; its log:"
  tail -n 40 "$log" >&2
  exit 1
fi
say "the Worker answers on $base"

# ---- 3. one anonymous session (smoke test; its token is the first one schemathesis uses)
session="$(curl -sS --max-time 10 -X POST "$base/api/v1/auth/anonymous" \
  -H "Content-Type: application/json" -H "X-Client-ID: $client_id" \
  -H "User-Agent: tether-schemathesis/1 (ci)" -d '{}')"
token="$(printf '%s' "$session" | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' 2>/dev/null || true)"
if [ -z "$token" ]; then
  say "anonymous sign-in did not return an access_token: $session"
  exit 1
fi
say "signed in an anonymous user (token ${#token} chars)"

# The auth provider: the first token, then a fresh anonymous user every $per_user requests.
cat >"$work/tether_st_hooks.py" <<'PY'
import json
import os
import threading
import urllib.request

import schemathesis

_BASE = os.environ["TETHER_ST_BASE"]
_CLIENT_ID = os.environ["TETHER_ST_CLIENT_ID"]
_PER_USER = int(os.environ["TETHER_ST_PER_USER"])
_lock = threading.Lock()
_state = {"token": os.environ["TETHER_ST_TOKEN"], "uses": 0, "users": 1}


def _sign_in() -> str:
    req = urllib.request.Request(
        _BASE + "/api/v1/auth/anonymous",
        data=b"{}",
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Client-ID": _CLIENT_ID,
            "User-Agent": "tether-schemathesis/1 (ci)",
        },
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)["access_token"]


@schemathesis.auth(refresh_interval=None, retry_on=[])
class RotatingAnonymousUser:
    """Bearer token of an anonymous user; a new user every TETHER_ST_PER_USER requests."""

    def get(self, case, ctx):
        with _lock:
            if _state["uses"] >= _PER_USER:
                try:
                    _state["token"] = _sign_in()
                    _state["users"] += 1
                except Exception:
                    pass  # e.g. sign-ups rate limited: keep the old user (429/402 are documented)
                _state["uses"] = 0
            _state["uses"] += 1
            return _state["token"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
PY

# ---- 4. schemathesis
seed_args=()
[ "$seed" != "random" ] && seed_args=(--seed "$seed")
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
say "schemathesis run: checks $checks; max $max_examples examples/operation; ${st_timeout}s budget"
set +e
(
  cd "$work" # hypothesis/schemathesis write nothing into the repo
  TETHER_ST_BASE="$base" TETHER_ST_CLIENT_ID="$client_id" TETHER_ST_TOKEN="$token" \
  TETHER_ST_PER_USER="$per_user" PYTHONPATH="$work" SCHEMATHESIS_HOOKS=tether_st_hooks \
  timeout -k 10 "$st_timeout" "$venv/bin/schemathesis" run "$root/worker/openapi.yaml" \
    --url "$base" \
    -H "X-Client-ID: $client_id" \
    -H "User-Agent: tether-schemathesis/1 (ci)" \
    --checks "$checks" \
    --phases examples,coverage,fuzzing \
    --max-examples "$max_examples" \
    --workers "$workers" \
    --request-timeout 30 \
    --generation-database none \
    --suppress-health-check all \
    --no-color \
    "${seed_args[@]}"
)
rc=$?
set -e

stop_worker
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  say "FAILED: schemathesis did not finish within ${st_timeout}s"
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  say "FAILED: schemathesis exit code $rc (the Worker's log tail follows)"
  tail -n 20 "$log" >&2 || true
  exit "$rc"
fi
say "OK: no server error and no response that breaks worker/openapi.yaml"
